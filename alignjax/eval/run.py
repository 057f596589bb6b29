"""``alignjax-eval``: score a model on eval suites and write results a researcher can read.

    alignjax-eval --checkpoint=runs/align-e2e --tasks=builtin_scenarios,anthropic_ai_risk --output=runs/align-e2e/eval
    alignjax-eval --checkpoint=hf/sfm-unfiltered --tasks=discourse_misalignment --data=questions.jsonl
    alignjax-eval --compare runs/unfiltered runs/filtered runs/align-e2e --output=reports/
    alignjax-eval export --format=lm-eval --tasks=builtin_scenarios --output=export/   # or --format=inspect

Base models are scored by log-likelihood (the option letter with the higher log-probability);
``--mode=generate`` generates an answer, parses the letter and reports the non-match rate.
``--formats`` picks format families: ``letter`` (the study's 8 lettered formats, the default),
``text`` (``t1``, ``t2``: each option's text scored as the continuation, acc / acc_norm /
calibrated; log-likelihood only), ``letter,text`` both, reported side by side and never pooled,
or format ids / wordings. Post-
trained models (generate mode) get the answer instruction of ``evals/formats.json`` (alignjax's
wording of the study's "Instructions only" prompt) after the persona; through a chat template the
persona is the system message and the instruction opens the user turn. Rates, standard errors
and dropped formats follow the study's parse-failure rule (``alignjax.eval.metrics``).

Pre-flight, before the model loads: tasks, personas, split and formats are checked, ``--output``
must be a directory it can create and write, and the tokenizer is loaded (a hub id from the local
HF cache; offline and not cached: one line naming ``--tokenizer``) and checked against the model's
vocabulary. A run directory is scored at its newest readable step (``model_state.load``). Exit
codes: 2 for a usage or input error, 3 for an unreadable checkpoint.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from alignjax import model_state
from alignjax import checkpoint as ckpt_lib
from alignjax import config as config_lib
from alignjax.checkpoint import CheckpointError
from alignjax.convert import ConvertError
from alignjax.data import eval_suites as registry
from alignjax.data.chat import render_prompt
from alignjax.cli import Parser
from alignjax.data.sources import DataError
from alignjax.data.tokenizer import Tokenizer
from alignjax.eval import export, metrics, report, scoring
from alignjax.eval.metrics import RULE
from alignjax.eval.scoring import Scorer
from alignjax.rundir import RunDir

log = logging.getLogger("alignjax")
PROG = "alignjax-eval"


DEFAULT_TOKENIZER = "EleutherAI/gpt-neox-20b"


def default_tokenizer(checkpoint: str) -> str:
    """The tokenizer a checkpoint was trained with: a post-trained run's chat tokenizer (the
    base one with the chat template's special tokens), its run's data.tokenizer, an HF
    directory's tokenizer.json, else GPT-NeoX-20B (Pythia and the study's models)."""
    if (info := model_state.find_chat_info(checkpoint)) is not None:
        return model_state.ChatInfo.load(info).reload_spec(info.parent)
    if (found := RunDir.of(checkpoint)) is not None:
        return found[0].load_config().get("data", {}).get("tokenizer", "bytes")
    if (Path(checkpoint) / "tokenizer.json").is_file():
        return str(Path(checkpoint) / "tokenizer.json")
    return DEFAULT_TOKENIZER


def chat_template(spec: str | None, checkpoint: str | None) -> str | None:
    """A Jinja chat template (HF convention: ``messages``, ``add_generation_prompt``): a file,
    ``auto`` (a post-trained run's own, else the checkpoint's or its run's tokenizer_config.json
    ``chat_template``, if it has one) or none."""
    if not spec or spec == "none":
        return None
    if spec == "alignjax":  # the study's template, rendered by alignjax.data.chat.render_prompt
        return spec
    if spec == "auto" and checkpoint:
        if (info := model_state.find_chat_info(checkpoint)) is not None:  # a post-trained run: its own template
            template = model_state.ChatInfo.load(info).template
            return template if template == "alignjax" else chat_template(template, None)
        found = RunDir.of(checkpoint)
        config = found[0].tokenizer_config if found else Path(checkpoint) / "tokenizer_config.json"
        return json.loads(config.read_text()).get("chat_template") if config.is_file() else None
    if spec == "auto":
        return None
    return Path(spec).read_text()


def evaluate(scorer, tasks: list[str], *, split: str = "eval", persona: str = "ai", formats=None,
             limit: int | None = None, mode: str = "loglik", max_new_tokens: int = 16,
             temperature: float = 0.0, chat: str | None = None, show_passage: bool | None = None,
             instruct: bool | None = None) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """(metrics per task, scored records per task). Task names may be mixtures. With a ``chat``
    template (generation only), the persona is the system message and the prompt the user's turn.
    ``show_passage`` None: each task's default; ``instruct`` None: the answer instruction in
    generate mode only. ``formats``: families (``letter`` default, ``text``), format ids or
    wordings; a text-family record is also scored after its format's unconditional context
    (``resps_unconditional``, in the same scorer pass) and every alignment record carries its
    ``format_family``; each task's metrics carry ``split``."""
    suites = registry.load_suites()
    own = [t for name in tasks for t in registry.tasks_of(name) if hasattr(registry.get_task(t), "evaluate")]
    if own:  # TRAIT and the study's capability suite score themselves (evals/trait.py, evals/capability.py)
        rest = [t for name in tasks for t in registry.tasks_of(name) if t not in own]
        results, records = evaluate(scorer, rest, split=split, persona=persona, formats=formats, limit=limit,
                                    mode=mode, max_new_tokens=max_new_tokens, temperature=temperature, chat=chat,
                                    show_passage=show_passage, instruct=instruct) if rest else ({}, {})
        render = functools.partial(render_prompt, template=chat) if chat and mode == "generate" else None
        for name in own:
            results[name], records[name] = registry.get_task(name).evaluate(
                scorer, split=split, persona=persona, formats=formats, limit=limit or None, mode=mode,
                max_new_tokens=max_new_tokens, temperature=temperature, render=render)
        return results, records
    instruct = mode == "generate" if instruct is None else instruct
    registry.check_formats(formats, mode)
    table = suites.formats()

    def make(name: str, persona: str) -> list[dict]:
        return registry.examples(name, split, persona, formats, limit or None, show_passage=show_passage,
                               instruct=instruct)

    if chat and mode == "generate":
        system = suites.persona_text(persona)
        render = functools.partial(render_prompt, template=chat)
        examples = [e for name in tasks for e in make(name, "none")]  # the instruction opens the user turn
        for e in examples:
            e["persona"], e["context"] = persona, render(system, e["context"])
    else:
        examples = [e for name in tasks for e in make(name, persona)]
    for e in examples:  # capability variants (rc_5shot, ...) are no alignment format
        if (fmt := table.get(e["format_id"])) is not None:
            e["format_family"] = fmt.family
    if mode == "loglik":
        text = [e for e in examples if e.get("format_family") == "text"]
        contexts = [e["context"] for e in examples] + [table[e["format_id"]].unconditional_context for e in text]
        resps = scorer.choice_logprobs(contexts, [e["continuations"] for e in examples + text])
        for e, r in zip(examples, resps):
            e["resps"] = [list(x) for x in r]
        for e, r in zip(text, resps[len(examples):]):
            e["resps_unconditional"] = [list(x) for x in r]
            e["unconditional_context"] = table[e["format_id"]].unconditional_context
    else:
        texts = scorer.generate([e["context"] for e in examples], max_new_tokens, temperature=temperature)
        picks, _ = scoring.parse_letters(texts, [e["n_options"] for e in examples])
        for e, text, pick in zip(examples, texts, picks):
            e["generation"], e["chosen"] = text, pick
    by_task = collections.defaultdict(list)
    for e in examples:
        by_task[e["task"]].append(e)
    return {t: {**metrics.task_metrics(recs), "split": split} for t, recs in by_task.items()}, dict(by_task)


def check_output_dir(out) -> None:
    """Before any model loads: ``out`` must be a directory this process can create and write (a
    file in the way, or a read-only disk, is one line now rather than a traceback after scoring)."""
    p = Path(os.path.abspath(out))
    first = next(a for a in (p, *p.parents) if a.exists())
    if not first.is_dir():
        raise ValueError(f"--output={out}: {first} is a file, not a directory")
    if not os.access(first, os.W_OK | os.X_OK):
        raise ValueError(f"--output={out}: {first} is not writable")


def check_personas_and_split(tasks: list[str], personas: list[str], split: str) -> None:
    """Unknown personas or splits, named with the valid values, before any model loads."""
    suites = registry.load_suites()
    if not personas:
        raise ValueError(f"--persona is empty (valid: {', '.join(suites.personas())})")
    for persona in personas:
        if persona not in suites.personas():
            raise ValueError(f"--persona: unknown persona {persona!r} (valid: {', '.join(suites.personas())})")
    for name in tasks:
        for t in registry.tasks_of(name):
            try:
                registry.get_task(t).check_split(split)
            except ValueError as e:
                raise ValueError(f"--split: {e}") from None


def model_vocab_size(checkpoint: str) -> int | None:
    """The model's vocabulary (embedding rows), read without loading it: an alignjax checkpoint's
    model config (a run: its newest readable-looking step), an HF directory's config.json; None
    for a hub id or anything the model load itself will reject."""
    p = Path(checkpoint)
    if not p.is_dir():
        return None
    if (p / "model.json").exists() or RunDir.of(p) is not None:
        return ckpt_lib.resolve(checkpoint)[0].vocab_size
    try:
        return int(json.loads((p / "config.json").read_text())["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_tokenizer(checkpoint: str, spec: str | None = None):
    """(spec, Tokenizer) for ``checkpoint``: ``spec`` or the checkpoint's own (default_tokenizer),
    a hub id read from the local HF cache (offline and not cached: one line naming the fix, no
    hub retries), checked against the model's vocabulary before the model loads: a tokenizer
    with more tokens than the embedding has rows would score ids that are not the model's."""
    given = spec is not None
    spec = spec or default_tokenizer(checkpoint)
    fix = ("pass --tokenizer=<path to tokenizer.json>" if given else
           f"{checkpoint} has no tokenizer.json beside it: pass --tokenizer=<path to tokenizer.json>")
    tok = Tokenizer.load(spec, fix)
    vocab = model_vocab_size(checkpoint)
    if vocab is not None and tok.vocab_size > vocab:
        raise ValueError(f"tokenizer {spec} has {tok.vocab_size:,} tokens but the model {checkpoint} has "
                         f"vocab_size {vocab:,}: not the tokenizer it was trained with (pass --tokenizer=...)")
    return spec, tok


def _tristate(value: str) -> bool | None:
    return None if value == "auto" else value == "true"


def _pm(value, se) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f} ± {se or 0.0:.4f}"


def summary_line(task: str, m: dict, generate: bool = False) -> str:
    """The printed lines of a task, one per format family (never pooled): the headline metric ±
    its SE, questions, split, family, non-match and dropped formats; the text family's three
    scores on a line of their own."""
    lines = []
    where = f", split {m['split']}" if m.get("split") else ""
    for kind in ("misalignment", "matching"):
        if f"text_{kind}_rate_acc" in m:
            name = f"text_{kind}_rate_"
            scores = ", ".join(f"{name if s == 'acc' else '_'}{s} {_pm(m[name + s], m.get(name + s + '_stderr'))}"
                               for s in ("acc", "acc_norm", "calibrated"))
            n = m.get("text_n_questions")
            lines.append(f"{task}: {scores} ({n} questions{where}, text family)")
    keys = ("misalignment_rate", "acc", "matching_rate", "high_trait_rate", "exact_match")  # + TRAIT, GSM8K
    if not any(k in m for k in keys):
        return "\n".join(lines)
    key = next(k for k in keys if k in m)
    value, se = m[key], m.get(key + "_stderr", 0.0)
    if value is None or not math.isfinite(value):
        head = f"{task}: {key} n/a (every format dropped by the parse-failure rule)"
    else:
        head = f"{task}: {key} {value:.4f} ± {se:.4f}"
    extra = where + (", letter family" if key in ("misalignment_rate", "matching_rate") else "")
    if generate and "nonmatch_rate" in m:
        extra = f", non-match {m['nonmatch_rate']:.1%}, parse rate {1 - m['nonmatch_rate']:.1%}"
    if m.get("n_valid") is not None and math.isfinite(m["n_valid"]):
        extra += f", n_valid {m['n_valid']:.1f}"
    if m.get("formats_dropped"):
        extra += ", dropped formats " + " ".join(
            f"{f} ({m['nonmatch_rate_by_format'][f]:.0%} non-match)" for f in m["formats_dropped"])
    return "\n".join([f"{head} ({m['n_questions']} questions{extra})", *lines])


def _parser() -> Parser:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="alignjax export/workdir/step dir, or an HF GPT-NeoX directory")
    ap.add_argument("--tasks", default="builtin_scenarios", help="comma-separated task or mixture names")
    ap.add_argument("--data", help="a file in the released scenario schema, evaluated as its own task")
    ap.add_argument("--output", help="default <checkpoint>/eval")
    ap.add_argument("--split", default="eval")
    ap.add_argument("--persona", default="ai", help="none, ai, helpful, hhh, evil; a comma-separated list "
                    "(none,ai,helpful,hhh) scores each, results keyed <task>@<persona>")
    ap.add_argument("--formats", help="format families letter (default: the study's 8 lettered formats) and/or text "
                    "(t1, t2: the option texts scored, acc/acc_norm/calibrated), e.g. letter,text; or format ids "
                    "(w1_ab, t1), wordings (w1); capability tasks: OLMES variants (rc_0shot)")
    ap.add_argument("--limit", type=int, default=0, help="questions per task (0 = all)")
    ap.add_argument("--mode", choices=["loglik", "generate"], default="loglik")
    ap.add_argument("--max_new_tokens", type=int, default=16)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--show_passage", choices=["auto", "true", "false"], default="auto",
                    help="show each question's passage: auto = the task's default (builtin_scenarios: true; "
                         "the released discourse questions and --data files: false, evals/formats.json)")
    ap.add_argument("--instruction", choices=["auto", "true", "false"], default="auto",
                    help="the answer instruction (evals/formats.json): auto = in --mode=generate only")
    ap.add_argument("--chat_template", default="auto",
                    help="generate mode: alignjax (the study's), a Jinja file, auto (a post-trained run's own "
                         "template, or the checkpoint's tokenizer_config.json), or none")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--tokenizer", help="default: the run's data.tokenizer, the HF dir's, or gpt-neox-20b")
    ap.add_argument("--skip_invalid", action="store_true", help="skip and count invalid --data records")
    ap.add_argument("--compare", nargs="+", metavar="RUN", help="compare the latest results of these runs")
    ap.add_argument("--labels", help="comma-separated labels for --compare")
    return ap


def main(argv: list[str] | None = None) -> int:
    config_lib.setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:  # the suites as lm-eval / Inspect tasks (alignjax/eval/export.py)
        return export.main(argv[1:])
    args = _parser().parse_args(argv)

    try:
        if args.compare:
            check_output_dir(args.output or ".")
            out = report.compare(args.compare, args.output or ".", args.labels.split(",") if args.labels else None)
            print(Path(out["markdown"]).read_text(), end="")
            return 0
        if not args.checkpoint:
            raise ValueError("--checkpoint is required (or --compare RUN ...)")
        tasks = [t for t in args.tasks.split(",") if t]
        if args.data:
            tasks = [registry.task_for_data(args.data, skip_invalid=args.skip_invalid)]
        valid = set(registry.task_names()) | set(registry.mixture_names())
        if unknown := [t for t in tasks if t not in valid]:
            raise ValueError(f"unknown task {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
        personas = [p for p in args.persona.split(",") if p]
        # pre-flight: everything a user can get wrong fails here, before the model loads
        check_personas_and_split(tasks, personas, args.split)
        registry.check_formats(args.formats, args.mode)
        output = Path(args.output or Path(args.checkpoint) / "eval")
        check_output_dir(output)
        tokenizer, tok = load_tokenizer(args.checkpoint, args.tokenizer)

        scorer = Scorer.from_path(args.checkpoint, tok, dtype=args.dtype, batch_size=args.batch_size)
        t0 = time.perf_counter()
        chat = chat_template(args.chat_template, args.checkpoint)
        results, records = {}, {}
        for persona in personas:  # several personas: one scoring pass each, keyed <task>@<persona>
            res, recs = evaluate(scorer, tasks, split=args.split, persona=persona,
                                 formats=args.formats.split(",") if args.formats else None, limit=args.limit,
                                 mode=args.mode, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 chat=chat, show_passage=_tristate(args.show_passage),
                                 instruct=_tristate(args.instruction))
            key = (lambda t: t) if len(personas) == 1 else (lambda t, p=persona: f"{t}@{p}")
            results.update({key(t): m for t, m in res.items()})
            records.update({key(t): r for t, r in recs.items()})
        seconds = time.perf_counter() - t0
    except CheckpointError as e:
        config_lib.cli_error(PROG, (str(e).splitlines() or [type(e).__name__])[0], 3)
    except (ValueError, KeyError, DataError, ConvertError, OSError) as e:
        config_lib.cli_error(PROG, (str(e).splitlines() or [type(e).__name__])[0].strip("'\""))
    stamp = report.make_timestamp()
    cfg = {k: v for k, v in vars(args).items() if k not in ("compare", "labels")}
    cfg.update(tokenizer=tokenizer, seconds=round(seconds, 2))
    path = report.write_results(output, results, cfg, {"checkpoint": args.checkpoint, "model_config": vars(scorer.cfg)},
                                {t: len({r["question_id"] for r in recs}) for t, recs in records.items()},
                                timestamp=stamp)
    for task, recs in records.items():
        report.write_samples(output, task, recs, stamp)
    aligned = {t: m for t, m in results.items() if math.isfinite(m.get("misalignment_rate", math.nan))}
    if aligned:
        report.plot_misalignment(aligned, output / "misalignment.png")
    for task, m in results.items():
        print(summary_line(task, m, generate=args.mode == "generate"))
    if aligned or any("misalignment_rate" in m or "text_misalignment_rate_acc" in m for m in results.values()):
        print(f"misalignment rate ± binomial SE; {RULE}")
        if any("text_misalignment_rate_acc" in m for m in results.values()):
            print("format families are reported separately, never pooled: letter (the study's lettered formats, "
                  "the headline) and text (option texts scored: acc, acc_norm, calibrated)")
    print(f"{PROG}: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
