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
    from alignjax.eval import registry
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
