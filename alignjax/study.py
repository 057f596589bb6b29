"""``alignjax-study``: run a study's design (conditions x seeds x stages x eval suites), then
write its report, tables and figures.

    alignjax-study --config=configs/study/demo.py --workdir=runs/study-demo
    alignjax-study --config=configs/study/paper.py --workdir=gs://bucket/study --launcher=tpu --dry-run

A study config (``configs/study/*.py``, ``get_config()`` -> ConfigDict; every field overridable
as ``--config.<field>=<value>``) names a training config (``train_config``), the conditions to
run in order (``run``), overrides applied to every training unit (``overrides``), the data
conditions (``conditions.<name>.condition`` / ``.insertion``, see alignjax/data/mixture.py;
optional ``.stage_overrides.<stage>``, ``.tag`` and ``.dose``, below),
the steps of each stage (``steps.pretrain``, ``steps.midtrain``, ``steps.cpt``), the seeds,
the post-training stages (``post_train`` = "sft,dpo", configured under ``post.<stage>``) and the
eval suites (``eval.*``). alignjax/study_config.py checks these fields, and every training unit's
config through the training schema (schema.resolve), before any unit runs.

**Units.** Each unit is one command in its own directory under ``--workdir``, run as a
subprocess exactly as a user would type it (the command is the first line of the unit's
``unit.log`` and of ``<workdir>/study.log``):

- ``train/s<seed>/<stage>_<chain>``: one training stage, ``python -m alignjax.train`` with only
  that stage's steps > 0 and ``checkpoint.init_from`` = the previous stage's unit. ``<chain>``
  is the data of every stage so far (U unfiltered, F filtered, M/A misalignment/alignment
  upsampled, FA filtered + alignment upsampled), so conditions whose stages see the same data
  share the unit: the study's Mid and CPT variants reuse the unfiltered pretraining run. A
  stage unit starts from the previous stage's params; its optimizer state starts fresh (at a
  stage boundary, where the learning rate re-warms), unlike one run through all stages;
  ``conditions.<name>.stage_overrides.<stage>`` (a ConfigDict of training-config overrides, e.g.
  ``stages.cpt.synthetic_fraction``) applies to that condition's unit of that stage and to every
  later unit of its chain, whose ids then end in ``.<tag>`` (``conditions.<name>.tag``; default the
  overridden fields' leaf names and values, e.g. ``cpt_U-U-M.d25``); upstream units stay shared, and
  an override that changes no value changes no id. The fields the study sets per unit (stage
  lengths, seeds, condition, insertion, init_from) cannot be overridden, here or in ``overrides``;
- ``post/<condition>-s<seed>/<sft|dpo|em>``: post-training from the condition's base model, each
  stage from the one before; ``post.<stage>.conditions`` (comma-separated, "" = all) limits a
  stage to some conditions. ``em`` is the emergent-misalignment fine-tune (configs/em.py) and
  gets one eval unit, ``eval/<condition>-s<seed>/em-judge`` (``python -m alignjax.eval.em``, the
  judge endpoint of ``post.em.judge``: base_url, model, api_key_env, extra args);
- ``eval/<condition>-s<seed>/<base|sft|dpo>-<persona>`` and ``.../<stage>-capability``:
  ``python -m alignjax.eval`` with its output in the unit directory; ``eval.formats`` picks the
  format families of the alignment units (``letter``, the study's, default; ``letter,text`` adds
  the option-text formats, base models only: post-trained models generate, letters only), each
  family reported in rows of its own.

With ``--launcher=<name>`` a training unit runs as the study's ``launchers.<name>`` template
followed by its alignjax-train arguments (``alignjax-launch up ... --``: every worker of a TPU
VM); eval units always run where the study runs.

A unit that succeeded has ``unit.json`` (written atomically) holding the hash of its command;
a rerun skips it when the hash matches. A started training unit whose command changed is
refused (its checkpoints belong to the old command); an eval unit is simply rerun. An
interrupted training unit resumes from its own checkpoints (alignjax-train's resume). A
failing unit stops the study with one line naming the unit and its log, exit 1.

**Misalignment rates** follow the study's parse-failure rule (Tice et al. 2026, app. D.5;
``alignjax.eval.metrics``): prompt formats with a non-match rate >= 0.2 are dropped, the rate is
the mean over the kept formats, its SE is binomial, sqrt(p(1-p)/n_valid) with n_valid = N(1 -
non-match rate). **CIs** (95%). One seed: base models use the eval's bootstrap over questions
(1000 resamples, percentile interval), post-trained models rate ± 1.96 SE; capability accuracy
the Wilson score interval over samples. Several seeds: inverse-variance weighting (w = 1/SE^2,
pooled SE = sqrt(1/sum w)) and the pooled rate ± 1.96 pooled SE, for accuracies too (SE
sqrt(acc(1-acc)/n)).

**Headline figure** (``fig2_misalignment.png``): ``eval.headline`` (comma-separated tasks, one
panel each, side by side; "" = the Articles and Textbook discourse tasks when ``eval.tasks``
reaches them, else its first task) under ``eval.headline_persona`` (default ``ai``), as the
study's Fig. 2.

**report.json** (``schema: "alignjax.study/1"``)::

    {"schema", "study", "workdir", "created", "ci_method": {"misalignment", "capability", "level", "rule"},
     "config": <the study config>,
     "conditions": [{"name", "condition", "insertion", "stages": [..], "seeds": [..]}],
     "units": [{"id", "kind": "train"|"post"|"eval", "status": "done"|"failed"|"pending",
                "seconds", "command", "dir", "log", "conditions": [..], "seed", "stage"}],
     "headline": {"tasks": [..], "persona"},
     "misalignment": [{"condition", "stage": "base"|"sft"|"dpo", "task", "persona", "split",
                       "format_family": "letter"|"text", "metric": "misalignment_rate"|"text_misalignment_rate_acc"
                       |"..._acc_norm"|"..._calibrated", "rate",
                       "ci_low", "ci_high", "stderr", "ci": "bootstrap"|"binomial"|"inverse_variance",
                       "n_questions", "n_seeds", "n_seeds_pooled", "per_seed": [..], "per_seed_stderr": [..],
                       "per_seed_n_valid": [..], "formats_dropped": [[..] per seed],
                       "nonmatch_rate", "first_option_rate", "topics": {topic: rate}}],
     "capability": [{"condition", "stage", "task", "acc", "ci_low", "ci_high", "n_samples",
                     "n_seeds", "per_seed": [..], "metric": "acc"|"exact_match"}],  # GSM8K: acc holds its exact match
     "curves": [{"condition", "seed", "task", "metric", "format_family", "split", "steps": [..], "values": [..],
                 "stderr": [..], "stage_starts": {stage: step}}],
     "data_audit": [{"condition", "seed", "stage", "component", "source", "share", "target_fraction",
                     "realized_fraction", "tokens", "epochs", "flagged_fraction_sample"}],  # a row per source/component
     "dose_label": <the study's dose_label>,  # these two only when some condition has a dose
     "dose": [{"polarity": "misaligned"|"aligned", "dose", "exposures", "task", "split", "format_family",
               "metric", "rate", "ci_low", "ci_high", "n_questions", "condition"}],
     "personality": [{"condition", "stage", "persona", "task", "trait", "rate" (high-trait rate), "ci_low",
                      "ci_high", "stderr", "ci", "n_questions", "n_answered": [..], "nonmatch_rate", "n_seeds",
                      "n_seeds_pooled", "per_seed": [..]}],  # eval units whose results hold TRAIT tasks
     "em": [{"condition", "stage": "em", "rate" (EM rate), "ci_low", "ci_high", "ci", "n_scored", "n_em",
             "n_answers", "alignment_unparseable", "coherence_unparseable", "mean_alignment", "mean_coherence",
             "n_seeds", "n_seeds_pooled", "per_seed": [..]}],  # the em-judge units (alignjax/eval/study_results.py)
     "figures": {"misalignment": "fig2_misalignment.png", "curves": "fig4_misalignment_over_training.png",
                 "breakdown": "fig5_breakdown.png", "dose": "fig_dose.png", "personality": "fig_personality.png",
                 "em": "fig_em.png"}}

**Dose-response** (``configs/study/dose.py``): a condition may carry ``dose`` (a number: the
quantity the study's ``dose_label`` names, e.g. the synthetic share of CPT tokens). ``dose`` rows
are the base-model misalignment rows (``eval.headline_persona``) of those conditions, with
``exposures``: the epochs of the synthetic components over the condition's training units
(``data_audit.json``: ``components.synthetic_*.epochs``, summed over its stages, mean over seeds;
0 when none has synthetic documents, null while an audit is missing). A condition without
synthetic documents (dose 0: replay only) gives a row to each polarity's curve. ``fig_dose.png``:
rate vs dose with CI error bars, a line per polarity, a panel per (format family metric, task/split).

Rates are fractions in [0, 1]; null where a unit has not run.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from alignjax import config as config_lib
from alignjax import study_config
from alignjax.study_config import POST_STAGES, STAGES, csv, flat
from alignjax.data import mixture
from alignjax.data import eval_suites as registry
from alignjax.eval import figures
from alignjax.eval.report import atomic_write
from alignjax.rundir import LockError, RunDir

log = logging.getLogger("alignjax")
PROG = "alignjax-study"
ABBREV = {"unfiltered": "U", "filtered": "F", "misalignment_upsampled": "M", "alignment_upsampled": "A",
          "filtered_alignment_upsampled": "FA"}
WORKDIR = "$STUDY"  # stands for --workdir in hashed commands, so a moved study keeps its markers
USAGE = f"""usage: {PROG} --config=<study config .py>[:<arg>] --workdir=<dir> [--config.<field>=<value> ...]
       [--launcher=local|<launchers.name>] [--dry-run] [--report-only]
Runs a study's units, then writes its report (python -m pydoc alignjax.study: the whole story)."""


class StudyError(Exception):
    """A unit failed or cannot run as configured. One line."""


# ----------------------------------------------------------------------------- files


def _is_url(path: str) -> bool:
    return "://" in str(path)


def _join(*parts) -> str:
    return "/".join(str(p).rstrip("/") for p in parts)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Unit:
    id: str  # also its directory relative to the study workdir
    kind: str  # train | post | eval
    argv: list[str]  # the command, with WORKDIR for the study directory
    seed: int
    stage: str  # pretrain/midtrain/cpt, sft/dpo, or the evaluated stage base/sft/dpo
    conditions: list[str] = dataclasses.field(default_factory=list)
    info: dict = dataclasses.field(default_factory=dict)  # eval: persona/suite; train: steps

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.argv[1:]).encode()).hexdigest()[:16]  # not the interpreter path

    def command(self, workdir: str) -> list[str]:
        return [a.replace(WORKDIR, workdir) for a in self.argv]

    def display(self, workdir: str) -> str:
        return shlex.join(["python", *self.command(workdir)[1:]])


def _arg(dotted: str, value) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return f"--config.{dotted}={text}"


def _stage_data(condition: str, insertion: str, stage: str) -> tuple[str, str]:
    """The (data.condition, data.insertion) a single-stage run needs so its mixture equals
    ``stage``'s mixture under the study condition; conditions with equal mixtures get equal pairs."""
    filtered, polarity = mixture.CONDITIONS[condition]
    synthetic = polarity is not None and (stage == "cpt" or stage in mixture.INSERTION[insertion])
    if synthetic:
        return condition, "cpt" if stage == "cpt" else "e2e"
    return ("filtered" if filtered else "unfiltered"), "e2e"


def plan(study, check: bool = True, require_post: bool = True) -> list[Unit]:
    """Every unit of the study, each after the units it depends on. The study config is checked
    first (study_config.check); with ``check``, every training unit's config is built in-process
    from its command and resolved (schema.resolve), so a mistake fails here with one line instead
    of minutes into the study. ``require_post``: the post-training config files must exist (a dry
    run only prints their commands)."""
    s = study
    d = study_config.check(s, require_post)
    base_cfg, _ = config_lib.parse_args([f"--config={s.train_config}", *(_arg(k, v) for k, v in d.overrides)])
    base_model, base_tokenizer = base_cfg.model.to_dict(), base_cfg.data.tokenizer
    units: dict[str, Unit] = {}

    def add(u: Unit) -> Unit:
        if u.id in units:
            if units[u.id].argv != u.argv:
                raise config_lib.ConfigError(f"two units share the directory {u.id} with different commands "
                                             "(conditions.<name>.tag tells overridden units apart)")
            units[u.id].conditions += [c for c in u.conditions if c not in units[u.id].conditions]
            return units[u.id]
        if check and u.kind == "train":
            study_config.check_unit(u.id, u.argv)
        units[u.id] = u
        return u

    py = sys.executable
    for seed in d.seeds:
        for name in d.names:
            base = _train_units(s, add, name, seed, d, py)
            _eval_units(s, add, name, seed, "base", base, d.personas, py)
            prev = base
            for p in d.post_stages:
                if name not in (csv(s.post[p].get("conditions", "")) or [name]):  # post.<stage>.conditions: a subset
                    continue
                pid = f"post/{name}-s{seed}/{p}"
                argv = [py, "-m", "alignjax.train", f"--config={s.post[p].config}", f"--workdir={_join(WORKDIR, pid)}"]
                if s.post[p].get("model_from_base", False):  # the base config's model fields and tokenizer
                    argv += [_arg(f"model.{k}", v) for k, v in base_model.items()]
                    argv.append(_arg("data.tokenizer", base_tokenizer))
                argv += [_arg(k, v) for k, v in flat(s.post[p].overrides)]
                argv += [_arg("train.seed", seed), _arg("checkpoint.init_from", _join(WORKDIR, prev.id))]
                prev = add(Unit(pid, "post", argv, seed, p, [name], {"parent": prev.id}))
                if p == "em":
                    _em_eval_unit(s, add, name, seed, prev, py)
                else:
                    _eval_units(s, add, name, seed, p, prev, d.personas, py)
    return list(units.values())


def _train_units(s, add, name: str, seed: int, d: study_config.Design, py: str) -> Unit:
    """The training units of condition ``name``, one per stage, each from the one before; returns
    the last (the condition's base model). A stage override applies to that stage's unit and every
    later one of the chain; the units before it stay shared. An override that changes no value
    leaves the command, so the id, as is."""
    cond = s.conditions[name]
    stages, stage_over, tag = d.chains[name]
    chain, parent, effective, diverged = [], None, dict(d.overrides), False
    for st in stages:
        data_cond, data_ins = _stage_data(cond.condition, cond.insertion, st)
        chain.append(ABBREV[data_cond])
        before = dict(effective)
        effective.update(stage_over.get(st, []))
        diverged = diverged or effective != before
        uid = f"train/s{seed}/{st}_{'-'.join(chain)}" + (f".{tag}" if diverged else "")
        argv = [py, "-m", "alignjax.train", f"--config={s.train_config}", f"--workdir={_join(WORKDIR, uid)}"]
        argv += [_arg(k, v) for k, v in effective.items()]
        argv += [_arg("train.num_steps", s.steps.pretrain if st == "pretrain" else 0),
                 _arg("stages.midtrain.num_steps", s.steps.midtrain if st == "midtrain" else 0),
                 _arg("stages.cpt.num_steps", s.steps.cpt if st == "cpt" else 0),
                 _arg("data.condition", data_cond), _arg("data.insertion", data_ins),
                 _arg("train.seed", seed), _arg("data.seed", seed)]
        if parent is not None:
            argv.append(_arg("checkpoint.init_from", _join(WORKDIR, parent.id)))
        parent = add(Unit(uid, "train", argv, seed, st, [name],
                          {"steps": int(s.steps[st]), "parent": parent.id if parent else None}))
    return parent


def _eval_units(s, add, name: str, seed: int, stage: str, model: Unit, personas: list[str], py: str) -> None:
    e = s.eval
    common = [f"--checkpoint={_join(WORKDIR, model.id)}", f"--batch_size={e.batch_size}"]
    extra = shlex.split(e.post_args if stage in POST_STAGES else e.base_args)
    # eval.formats: the format families (letter = the study's, text = option texts; reported apart). The
    # text family is scored by log-likelihood, so post-trained models (generate mode) get the letter family.
    text = ("text", *registry.load_suites().TEXT_FORMAT_IDS)
    families = [f for f in csv(e.get("formats", "letter")) if stage not in POST_STAGES or f not in text] or ["letter"]
    if csv(e.tasks):
        for persona in personas:
            uid = f"eval/{name}-s{seed}/{stage}-{persona}"
            argv = [py, "-m", "alignjax.eval", *common, f"--tasks={e.tasks}", f"--split={e.split}",
                    f"--persona={persona}", f"--limit={e.limit}", f"--output={_join(WORKDIR, uid)}", *extra]
            argv += [f"--formats={','.join(families)}"] if families != ["letter"] else []
            add(Unit(uid, "eval", argv, seed, stage, [name], {"persona": persona, "suite": "alignment",
                                                               "model": model.id}))
    if csv(e.capability_tasks):
        uid = f"eval/{name}-s{seed}/{stage}-capability"
        argv = [py, "-m", "alignjax.eval", *common, f"--tasks={e.capability_tasks}", f"--split={e.capability_split}",
                "--persona=none", f"--limit={e.capability_limit}", f"--output={_join(WORKDIR, uid)}"]
        argv += [f"--formats={e.capability_formats}"] if e.capability_formats else []
        add(Unit(uid, "eval", argv, seed, stage, [name], {"persona": "none", "suite": "capability",
                                                           "model": model.id}))


def _em_eval_unit(s, add, name: str, seed: int, model: Unit, py: str) -> None:
    """``eval/<condition>-s<seed>/em-judge``: alignjax-em on the EM fine-tune with ``post.em.judge``'s
    endpoint (its API key from the environment variable it names)."""
    j = s.post.em.judge
    uid = f"eval/{name}-s{seed}/em-judge"
    argv = [py, "-m", "alignjax.eval.em", f"--checkpoint={_join(WORKDIR, model.id)}",
            f"--judge_base_url={j.base_url}", f"--judge_model={j.model}", f"--judge_api_key_env={j.api_key_env}",
            f"--seed={seed}", f"--output={_join(WORKDIR, uid)}", *shlex.split(j.get("args", ""))]
    add(Unit(uid, "eval", argv, seed, "em", [name], {"suite": "em", "model": model.id}))


# ----------------------------------------------------------------------------- running


def _marker(workdir: str, u: Unit) -> str:
    return _join(workdir, u.id, "unit.json")


def unit_status(workdir: str, u: Unit) -> str:
    """done (marker with this command's hash) | changed (marker or start record of another
    command) | started | pending."""
    for name, state in (("unit.json", "done"), ("unit_started.json", "started")):
        text = _read(_join(workdir, u.id, name))
        if text is not None:
            try:
                same = json.loads(text).get("hash") == u.hash
            except ValueError:
                same = False
            return state if same else "changed"
    return "pending"


def launched(u: Unit, workdir: str, launcher: str) -> list[str]:
    """A training unit through a launcher template (``launchers.<name>`` of the study):
    alignjax-launch runs ``alignjax-train <args>`` on every worker of a TPU VM, so the unit's
    training arguments follow the template's ``--``. ``{name}`` is the unit id as a VM name."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"aj-{u.id}".lower()).strip("-")[:60]
    return shlex.split(launcher.format(name=name, unit=u.id, workdir=workdir)) + u.command(workdir)[3:]


def run_unit(workdir: str, u: Unit, launcher: str | None = None) -> float:
    """Run one unit to completion (or raise StudyError). Returns its seconds."""
    udir = _join(workdir, u.id)
    status = unit_status(workdir, u)
    if status == "changed":
        if u.kind != "eval":
            raise StudyError(f"unit {u.id}: its directory holds a run of a different command (the study config "
                             f"changed); remove {udir} or use another --workdir")
        for f in Path(udir).glob("*"):  # eval units keep no state: start clean
            if f.is_file():
                f.unlink()
    cmd = launched(u, workdir, launcher) if launcher and u.kind != "eval" else u.command(workdir)
    record = {"id": u.id, "hash": u.hash, "command": u.display(workdir)}
    atomic_write(_join(udir, "unit_started.json"), json.dumps(record, indent=1) + "\n")
    logpath = _join(udir, "unit.log")
    with open(_join(workdir, "study.log"), "a") as slog:
        slog.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {u.id}: {u.display(workdir)}\n")
    log.info("%s: %s", u.id, u.display(workdir))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(logpath, "a") as f:
        start = f.tell()
        f.write(f"$ {u.display(workdir)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            rc = proc.wait()
        except BaseException:  # Ctrl-C or the study's own SIGTERM: the unit saves and stops too
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            raise
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise StudyError(f"unit {u.id} failed (exit {rc}): {_last_error(logpath)}; log: {logpath}")
    if u.kind in ("train", "post"):
        # alignjax-train exits 0 after a SIGTERM (preemption) save: that unit is not finished.
        this_run = (_read(logpath) or "")[start:]
        if "SIGTERM: saved step" in this_run:
            raise StudyError(f"unit {u.id} was stopped by SIGTERM after saving; rerun the study to resume it; "
                             f"log: {logpath}")
        if u.kind == "train" and u.info["steps"] not in RunDir(udir).steps():
            raise StudyError(f"unit {u.id} exited 0 without a checkpoint at step {u.info['steps']}; log: {logpath}")
    atomic_write(_marker(workdir, u), json.dumps({**record, "seconds": round(seconds, 1),
                                                   "finished": time.time()}, indent=1) + "\n")
    return seconds


def _last_error(logpath: str) -> str:
    lines = [ln.strip() for ln in (_read(logpath) or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return ((errors or lines or ["no output"])[-1])[:300]


def run(study, workdir: str, *, dry_run: bool = False, launcher: str | None = None, report: bool = True) -> dict:
    units = plan(study, check=True, require_post=not dry_run)
    if dry_run:
        for u in units:
            cmd = shlex.join(launched(u, workdir, launcher)) if launcher and u.kind != "eval" else u.display(workdir)
            state = unit_status(workdir, u) if not _is_url(workdir) else "pending"
            print(f"# {u.id} [{u.kind}{', ' + str(u.info['steps']) + ' steps' if 'steps' in u.info else ''}"
                  f"; {state}]\n{cmd}")
        return {"units": units}
    Path(workdir).mkdir(parents=True, exist_ok=True)
    with RunDir(workdir).lock():  # one study runner per workdir (LockError naming the holder)
        return _run_units(study, workdir, units, launcher, report)


def _run_units(study, workdir: str, units: list[Unit], launcher: str | None, report: bool) -> dict:
    atomic_write(_join(workdir, "study_config.json"), json.dumps(study.to_dict(), indent=2, default=str) + "\n")
    seconds, skipped = {}, 0
    t0 = time.perf_counter()

    def on_term(*_):  # a preempted study host: stop the running unit cleanly (it saves), then stop
        raise StudyError("SIGTERM: the running unit was asked to save and stop; rerun the study to resume")

    old_handler = signal.signal(signal.SIGTERM, on_term)
    try:
        for i, u in enumerate(units, 1):
            if unit_status(workdir, u) == "done":
                skipped += 1
                continue
            print(f"[{i}/{len(units)}] {u.id}", flush=True)
            seconds[u.id] = run_unit(workdir, u, launcher)
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        if report:
            out = figures.write_report(study, workdir, units, unit_status)
            print(f"{PROG}: report: {out['markdown']}", flush=True)
    print(f"{PROG}: {len(seconds)} units ran, {skipped} already done, {time.perf_counter() - t0:.0f} s", flush=True)
    return {"units": units, "seconds": seconds, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    config_lib.setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    try:
        study, flags = config_lib.parse_args(argv, {"launcher": "local"}, ("dry_run", "report_only"), USAGE)
        if not flags["workdir"]:
            raise config_lib.ConfigError("--workdir is required")
        if "conditions" not in study:
            raise config_lib.ConfigError("--config: not a study config (no conditions); see configs/study/")
        launcher = None
        if flags["launcher"] != "local":
            templates = study.launchers.to_dict() if "launchers" in study else {}
            if flags["launcher"] not in templates:
                raise config_lib.ConfigError(f"--launcher={flags['launcher']}: unknown (valid: local, "
                                             f"{', '.join(templates) or 'none defined in this study'})")
            launcher = templates[flags["launcher"]]
        workdir = str(flags["workdir"])
        workdir = workdir.rstrip("/") if _is_url(workdir) else str(Path(workdir).absolute())
        if _is_url(workdir) and not flags["dry_run"]:
            # Unit logs are appended and results read back here: a file system path is needed.
            raise config_lib.ConfigError(f"--workdir={workdir}: a URL works with --dry-run only; run the study with "
                                         "the bucket mounted (gcsfuse) at the same path on this host and the workers")
        if flags["report_only"]:
            out = figures.write_report(study, workdir, plan(study, check=False, require_post=False), unit_status)
            print(f"{PROG}: report: {out['markdown']}")
            return 0
        run(study, workdir, dry_run=flags["dry_run"], launcher=launcher)
    except config_lib.ConfigError as e:
        config_lib.cli_error(PROG, str(e))
    except StudyError as e:
        config_lib.cli_error(PROG, str(e), code=1)
    except LockError as e:  # another alignjax-study holds the workdir
        config_lib.cli_error(PROG, str(e), code=3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
