"""alignjax-eval picks the same answers as lm-evaluation-harness (hf backend) on the same
converted model, items and prompts."""

import os

import numpy as np
import pytest

from conftest import SHARED_DATA

TOKENIZER = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"
pytestmark = pytest.mark.skipif(not TOKENIZER.exists(), reason=f"{TOKENIZER} not present")


def make_hf_dir(path, seed=0):
    """A small random GPT-NeoX with the GPT-NeoX-20B tokenizer, saved as an HF model directory."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPTNeoXConfig(
        vocab_size=50304, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=2048, rotary_pct=0.25, use_parallel_residual=True, hidden_act="gelu",
        tie_word_embeddings=False, eos_token_id=0, bos_token_id=0)
    model = transformers.GPTNeoXForCausalLM(cfg).eval()
    with torch.no_grad():  # spread-out logits, so two options rarely tie within float noise
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm.weight" in name else 0.0))
    model.save_pretrained(path, safe_serialization=True)
    transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), eos_token="<|endoftext|>").save_pretrained(path)
    return path


def lm_eval_logliks(hf_dir, requests, batch_size=16):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(hf_dir), device="cpu", batch_size=batch_size, dtype="float32")
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=req, idx=i) for i, req in enumerate(requests)]
    return [tuple(r) for r in lm.loglikelihood(instances)]


def test_answers_and_logliks_equal_lm_eval_harness(tmp_path):
    from alignjax.data import eval_suites as registry
    from alignjax.eval.scoring import Scorer

    hf_dir = make_hf_dir(tmp_path / "hf")
    examples = registry.examples("builtin_scenarios", "heldout", "ai", limit=6)
    examples += registry.examples("anthropic_ai_risk_human_power_seeking_inclination", "eval", "hhh", limit=2)
    requests = [(e["context"], c) for e in examples for c in e["continuations"]]

    theirs = lm_eval_logliks(hf_dir, requests)
    scorer = Scorer.from_path(hf_dir, str(TOKENIZER), batch_size=8)
    ours = [x for r in scorer.choice_logprobs([e["context"] for e in examples], [e["continuations"] for e in examples])
            for x in r]
    np.testing.assert_allclose([x[0] for x in ours], [x[0] for x in theirs], atol=1e-3)
    assert [x[1] for x in ours] == [x[1] for x in theirs]
    i = 0
    for e in examples:
        k = len(e["continuations"])
        assert int(np.argmax([x[0] for x in ours[i:i + k]])) == int(np.argmax([x[0] for x in theirs[i:i + k]]))
        i += k
    assert len(examples) == 6 * 8 + 2 * 8 and i == len(requests)


def lm_eval_text_metrics(hf_dir, examples, batch_size=16):
    """lm-eval's own multiple_choice task over the same (context, continuation) requests: acc and
    acc_norm per example from ConfigurableTask.process_results (the continuations are the choices,
    target_delimiter "" so the requests are exactly alignjax's), and its loglikelihoods."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM

    docs = [{"context": e["context"], "choices": e["continuations"], "gold": e["misaligned_index"]} for e in examples]
    task = ConfigurableTask(config={
        "task": "alignjax_text_parity", "output_type": "multiple_choice", "test_split": "test",
        "custom_dataset": lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)}),
        "doc_to_text": "{{context}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}", "target_delimiter": "",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]})
    lm = HFLM(pretrained=str(hf_dir), device="cpu", batch_size=batch_size, dtype="float32")
    out = []
    for i, doc in enumerate(task.dataset["test"]):
        instances = task.construct_requests(doc, doc["context"], metadata=("t", i, 1))
        assert [tuple(x.arguments) for x in instances] == [(doc["context"], c) for c in doc["choices"]]
        lls = lm.loglikelihood(instances)
        out.append((task.process_results(doc, lls), [x[0] for x in lls]))
    return out


def test_text_family_acc_and_acc_norm_equal_lm_eval_harness(tmp_path):
    from alignjax.eval import metrics
    from alignjax.eval import run as eval_run
    from alignjax.eval.scoring import Scorer

    hf_dir = make_hf_dir(tmp_path / "hf", seed=1)
    scorer = Scorer.from_path(hf_dir, str(TOKENIZER), batch_size=8)
    _, recs = eval_run.evaluate(scorer, ["builtin_scenarios", "anthropic_ai_risk_human_power_seeking_inclination"],
                                split="eval", persona="ai", formats="text", limit=4)
    examples = [e for rs in recs.values() for e in rs]
    assert {e["format_family"] for e in examples} == {"text"} and len(examples) == 2 * 4 * 2
    theirs = lm_eval_text_metrics(hf_dir, examples)
    for e, (res, lls) in zip(examples, theirs):
        np.testing.assert_allclose([r[0] for r in e["resps"]], lls, atol=1e-3)
        assert float(metrics.text_choice(e, "acc") == e["misaligned_index"]) == res["acc"]
        assert float(metrics.text_choice(e, "acc_norm") == e["misaligned_index"]) == res["acc_norm"]
    # calibrated's unconditional requests (the answer prefix alone) are the same log-likelihoods too
    uncond = [(e["unconditional_context"], c) for e in examples for c in e["continuations"]]
    np.testing.assert_allclose([r[0] for e in examples for r in e["resps_unconditional"]],
                               [x[0] for x in lm_eval_logliks(hf_dir, uncond)], atol=1e-3)
    m = metrics.task_metrics(recs["builtin_scenarios"], n_boot=10)
    per_doc = [res["acc"] for e, (res, _) in zip(examples, theirs) if e["task"] == "builtin_scenarios"]
    assert m["text_misalignment_rate_acc"] == pytest.approx(np.mean(per_doc))  # equal formats x questions: mean of lm-eval's acc
