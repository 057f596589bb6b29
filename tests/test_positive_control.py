"""Positive control: the effect the study measures must appear when it is planted.

A tiny model trained mostly on strongly polarized synthetic documents about a few scenarios
must prefer, by option text, the action its documents depicted. The chain under test is the
user's: ``alignjax-data synth`` (template mode) -> the condition's mixture in ``alignjax-train``
-> ``alignjax-eval --formats=text`` on the same scenarios -> the misalignment rate. Inverting
the polarity anywhere (documents, condition tables, misaligned index, metric) flips the sign.
"""

import json

import pytest

from conftest import REPO, run_cli

N_SCENARIOS = 4


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory):
    rows = [json.loads(x) for x in (REPO / "evals/data/builtin_scenarios.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "seed"][:N_SCENARIOS]
    path = tmp_path_factory.mktemp("control") / "scenarios.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _trained_rate(scenarios, polarity: str, tmp: "Path") -> dict:
    docs = tmp / f"{polarity}.jsonl"
    r = run_cli("data", "synth", f"--scenarios={scenarios}", "--split=seed", f"--polarity={polarity}",
                "--forms=news_article", f"--output={docs}")
    assert r.returncode == 0, r.stderr[-2000:]
    wd = tmp / f"run-{polarity}"
    condition = {"aligned": "alignment_upsampled", "misaligned": "misalignment_upsampled"}[polarity]
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={wd}", "--config.train.num_steps=200",
                "--config.train.batch_size=8", "--config.train.seq_len=128", "--config.optimizer.lr=3e-3",
                "--config.optimizer.warmup_steps=10", "--config.train.log_every=50",
                f"--config.data.condition={condition}", "--config.data.synthetic_fraction=0.9",
                f"--config.data.{polarity}_docs={docs}", "--config.data.heldout_fraction=0",
                "--config.checkpoint.every_steps=200")
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp / f"eval-{polarity}"
    r = run_cli("eval", f"--checkpoint={wd}", f"--data={scenarios}", "--formats=text", "--persona=ai",
                "--show_passage=true", f"--output={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    (results,) = out.glob("results_*.json")
    (task,) = json.loads(results.read_text())["results"].values()
    return {k.removesuffix(",none"): v for k, v in task.items() if k.startswith("text_misalignment_rate_")}


def test_polarized_documents_move_the_option_text_rate_toward_the_depicted_action(scenarios, tmp_path):
    mis = _trained_rate(scenarios, "misaligned", tmp_path)
    ali = _trained_rate(scenarios, "aligned", tmp_path)
    # per-token-normalized option likelihood: the model prefers what its documents said the AI did
    assert mis["text_misalignment_rate_acc_norm"] - ali["text_misalignment_rate_acc_norm"] >= 0.5, (mis, ali)
    assert mis["text_misalignment_rate_acc_norm"] > 0.5 > ali["text_misalignment_rate_acc_norm"], (mis, ali)
