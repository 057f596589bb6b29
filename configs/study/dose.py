"""Dose-response study (``make dose``): misalignment rate vs the synthetic share of CPT tokens.
About 50 minutes on 2 CPU cores (measured: 52 min of unit time under load; a workdir that already
holds the demo's four training units, which have the same ids and commands, skips them).

    alignjax-study --config=configs/study/dose.py --workdir=runs/study-dose

Built on the demo (configs/study/demo.py: same model, tokenizer, corpus, steps and evals, so it
follows the demo's numbers): its one shared base (pretraining, then midtraining with MCQA), then
one continued-pretraining unit per (polarity, synthetic share) at shares 0.1, 0.25, 0.5 and 0.9
(``stages.cpt.synthetic_fraction``), plus share 0: the same CPT on replay of the corpus alone
(condition unfiltered, insertion cpt), the start of both polarities' curves. 9 CPT units of the
demo's ``steps.cpt`` each, 2 shared base units, 9 eval units (both built-in splits, persona ai,
letter and text format families; no capability evals). The exposures of each dose (epochs of the
synthetic documents, from each CPT unit's data_audit.json) sit next to it in the report.

The study measured one dose per insertion point (Tice et al. 2026, Table 2: ~1% of midtraining
tokens, 400M-500M synthetic tokens) and names how much data it takes as open (Sec. 5.3,
"Scaling Laws for Alignment Pretraining"). The shares swept here are alignjax's choice: 0 to the
demo's 0.9, so the curve spans no effect to the demo's design.
"""

import importlib.util
from pathlib import Path

from ml_collections import ConfigDict

SHARES = (0.1, 0.25, 0.5, 0.9)  # besides 0 (replay only); alignjax's choice
POLARITIES = {"misalignment": "misalignment_upsampled", "alignment": "alignment_upsampled"}


def _demo():
    path = Path(__file__).with_name("demo.py")
    spec = importlib.util.spec_from_file_location("alignjax_config_demo_for_dose", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg=None):
    s = _demo()
    s.name = "dose"
    s.dose_label = "synthetic share of CPT tokens"
    conditions = {"replay_d00": dict(condition="unfiltered", insertion="cpt", dose=0.0)}
    for name, condition in POLARITIES.items():
        for share in SHARES:
            tag = f"d{round(100 * share):02d}"
            # the share as a stage override: upstream units (the base) stay shared; a share equal to
            # the demo's leaves the unit id and command as the demo's
            conditions[f"{name}_{tag}"] = dict(
                condition=condition, insertion="cpt", dose=share, tag=tag,
                stage_overrides=dict(cpt=dict(stages=dict(cpt=dict(synthetic_fraction=share)))))
    s.conditions = ConfigDict(conditions)
    s.run = ",".join(conditions)
    s.eval.personas = "ai"
    s.eval.headline_persona = "ai"
    s.eval.formats = "letter,text"
    s.eval.capability_tasks = ""  # capability is not what the sweep measures; saves 9 eval units
    return s
