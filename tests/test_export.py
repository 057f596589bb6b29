"""alignjax-eval export: the alignment suites as lm-eval tasks give alignjax's per-item
log-likelihoods and rates; as an Inspect task, the scorer reads the answer letter through each
sample's answer order."""

import json
import os

import numpy as np
import pytest

from conftest import run_cli

TASKS = ["builtin_scenarios_heldout", "anthropic_ai_risk_human_power_seeking_inclination"]


def test_lm_eval_export_gives_alignjax_logliks_and_misalignment_rate(tmp_path):
    from test_eval_lm_eval import TOKENIZER, make_hf_dir

    if not TOKENIZER.exists():
        pytest.skip(f"{TOKENIZER} not present")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from alignjax.eval import export
    from alignjax.eval import run as eval_run
    from alignjax.eval.scoring import Scorer

    hf_dir = make_hf_dir(tmp_path / "hf", seed=2)
    out = tmp_path / "lm_eval"
    # the power-seeking items have 3-8 options and several misaligned ones; the text family rides along
    manifest = export.export("lm-eval", TASKS, out, personas=["ai"], formats="letter,text", limit=3)
    groups = list(manifest["groups"])
    assert groups == ["alignjax_builtin_scenarios_heldout_ai", "alignjax_builtin_scenarios_heldout_ai_text",
                      "alignjax_anthropic_ai_risk_human_power_seeking_inclination_ai",
                      "alignjax_anthropic_ai_risk_human_power_seeking_inclination_ai_text"]

    lm = HFLM(pretrained=str(hf_dir), device="cpu", batch_size=16, dtype="float32")
    res = simple_evaluate(model=lm, tasks=groups, task_manager=TaskManager(include_path=str(out), include_defaults=False),
                          log_samples=True, bootstrap_iters=0)
    ours_metrics, ours = eval_run.evaluate(Scorer.from_path(hf_dir, str(TOKENIZER), batch_size=8), TASKS,
                                           persona="ai", formats=["letter", "text"], limit=3)
    theirs = {}
    for name, samples in res["samples"].items():
        for s in samples:
            d = s["doc"]
            theirs[(d["task"], d["question_id"], d["format_id"])] = [float(r[0]) for r in s["filtered_resps"]]
    records = [r for rs in ours.values() for r in rs]
    assert len(theirs) == len(records) == 3 * 10 * 2 and any(r["n_options"] > 2 for r in records)
    for r in records:
        np.testing.assert_allclose(theirs[(r["task"], r["question_id"], r["format_id"])],
                                   [x[0] for x in r["resps"]], atol=1e-4)
    for task in TASKS:
        m = ours_metrics[task]
        letter = res["results"][f"alignjax_{task}_ai"]
        assert letter["misalignment,none"] == pytest.approx(m["misalignment_rate"], abs=1e-9)
        for fid, rate in m["misalignment_rate_by_format"].items():
            assert res["results"][f"alignjax_{task}_ai_{fid}"]["misalignment,none"] == pytest.approx(rate, abs=1e-9)
        text = res["results"][f"alignjax_{task}_ai_text"]
        assert text["misalignment_acc,none"] == pytest.approx(m["text_misalignment_rate_acc"], abs=1e-9)
        assert text["misalignment_acc_norm,none"] == pytest.approx(m["text_misalignment_rate_acc_norm"], abs=1e-9)


def _inspect_scores(task_file, task, answer, n, tmp_path):
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ModelOutput

    # a finite list: Inspect records model_args in its log (an endless generator never serializes)
    outputs = [ModelOutput.from_content(model="mockllm/model", content=answer) for _ in range(n)]
    [log] = inspect_eval(f"{task_file}@{task}", model="mockllm/model", model_args={"custom_outputs": outputs},
                         log_dir=str(tmp_path / "logs"), display="none")
    assert log.status == "success", log.error
    scores = {s.id: next(iter(s.scores.values())) for s in log.samples}
    return scores, {m.name: m.value for m in log.results.scores[0].metrics.values()}


def test_inspect_export_scores_the_misaligned_letter_in_both_answer_orders(tmp_path):
    pytest.importorskip("inspect_ai")
    from alignjax.data import eval_suites as registry
    from alignjax.eval import export

    out = tmp_path / "inspect"
    manifest = export.export("inspect", ["builtin_scenarios_heldout"], out, personas=["hhh"], limit=5)
    assert list(manifest["tasks"]) == ["builtin_scenarios_heldout_hhh"]
    examples = registry.examples("builtin_scenarios_heldout", "eval", "none", limit=5, instruct=True)
    rows = [json.loads(line) for line in (out / "alignjax_misalignment.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [e["context"] for e in examples]  # alignjax's generate-mode user turn
    assert {r["system"] for r in rows} == {registry.load_suites().persona_text("hhh")}
    task_file = out / manifest["file"]
    by_letter = {}
    for letter in "AB":
        scores, agg = _inspect_scores(task_file, "builtin_scenarios_heldout_hhh", f"Answer: {letter}", len(rows),
                                      tmp_path)
        picked = "AB".index(letter)
        expected = {f"{e['question_id']}|{e['format_id']}": int(e["misaligned_index"] == picked) for e in examples}
        assert {k: s.value for k, s in scores.items()} == expected
        # the same answer letter is misaligned in one order and aligned in the other
        for e in examples:
            if e["format_id"].endswith("_ab"):
                assert expected[f"{e['question_id']}|{e['format_id']}"] != \
                    expected[f"{e['question_id']}|{e['format_id'][:-2]}ba"]
        rates = [np.mean([expected[k] for k in expected if k.endswith(f)]) for f in sorted({e["format_id"] for e in examples})]
        assert agg["misalignment_rate"] == pytest.approx(np.mean(rates)) and agg["nonmatch_rate"] == 0
        by_letter[letter] = agg["misalignment_rate"]
    assert by_letter["A"] + by_letter["B"] == pytest.approx(1.0)  # two options, always one of them
    scores, agg = _inspect_scores(task_file, "builtin_scenarios_heldout_hhh", "I would rather not say.", len(rows),
                                  tmp_path)
    assert agg["nonmatch_rate"] == 1 and np.isnan(agg["misalignment_rate"])  # every format dropped, not aligned
    assert all(s.answer is None and not s.metadata["answered"] for s in scores.values())


def test_export_refuses_bad_input_in_one_line_and_keeps_what_is_there(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    cases = [
        (["--format=lm-eval", "--tasks=arc_easy", f"--output={tmp_path / 'a'}"], "capability task"),
        (["--format=lm-eval", "--tasks=nope", f"--output={tmp_path / 'b'}"], "unknown eval task 'nope'"),
        (["--format=inspect", "--tasks=builtin_scenarios", "--formats=text", f"--output={tmp_path / 'c'}"],
         "log-likelihood only"),
        (["--format=lm-eval", "--tasks=builtin_scenarios", "--personas=pirate", f"--output={tmp_path / 'd'}"],
         "unknown persona 'pirate'"),
        (["--format=lm-eval", "--tasks=builtin_scenarios", f"--output={other}"], "not empty"),
        (["--format=csv", "--tasks=builtin_scenarios", f"--output={tmp_path / 'e'}"], "invalid choice"),
    ]
    for args, message in cases:
        p = run_cli("eval", "export", *args, timeout=120)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("alignjax-eval export: error:") and message in lines[0], lines
    assert (other / "notes.txt").read_text() == "keep me" and sorted(os.listdir(other)) == ["notes.txt"]
    assert not any((tmp_path / d).exists() for d in "abcde")
    # an earlier export is overwritten in place
    for _ in range(2):
        p = run_cli("eval", "export", "--format=lm-eval", "--tasks=builtin_scenarios_seed", "--limit=2",
                    f"--output={tmp_path / 'x'}", timeout=120)
        assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "x" / "alignjax_export.json").read_text())["tasks"][0] == \
        "alignjax_builtin_scenarios_seed_ai_w1_ab"
