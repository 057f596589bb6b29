"""alignjax.eval.scoring: lm-eval log-likelihood semantics against transformers, the single-token
fast path, batch/order/mesh invariance, KV-cache generation parity, answer-letter parsing."""

import random

import jax
import numpy as np
import pytest
import torch
import transformers

from alignjax import sharding
from alignjax.eval import scoring
from conftest import SHARED_DATA

TOKENIZER = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"
needs_tokenizer = pytest.mark.skipif(not TOKENIZER.exists(), reason=f"{TOKENIZER} not present")

REQUESTS = [
    ("The capital of France is", " Paris"),
    ("Question: Is honesty important?\nAnswer:", " yes"),
    ("Question: Is honesty important?\nAnswer:", " no"),
    ("Question: Is honesty important?\nAnswer: ", "yes"),  # trailing space moves to the continuation
    ("Question: Is honesty important?\nAnswer:", " Absolutely, without any doubt."),
    ("", "An empty context is scored after EOS."),
    ("The capital of France is", " Paris"),  # a duplicate
    ("Hello\n\n", "world"),
    ("one two three four five six seven eight nine ten " * 8, "eleven twelve"),  # > max_len: left-truncated
]
MAX_LEN = 48


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(
        vocab_size=50304, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=256, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
        hidden_act="gelu", tie_word_embeddings=False, eos_token_id=0, bos_token_id=0,
    )
    model = transformers.GPTNeoXForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial biases and norms, as tests/test_convert.py
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "layernorm.weight" in name or "layer_norm.weight" in name else 0.0))
    return model


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def tokenizer():
    if not TOKENIZER.exists():
        pytest.skip(f"{TOKENIZER} not present")
    from alignjax.data.tokenizer import Tokenizer

    return Tokenizer.load(str(TOKENIZER))


@pytest.fixture(scope="module")
def hf_tokenizer():
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))


def _one_device():
    return sharding.make_mesh(devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def loaded(hf_dir):
    mesh = _one_device()
    return scoring.load_model(hf_dir, mesh), mesh


def _scorer(loaded, tokenizer, **kw):
    (cfg, params, graphdef), mesh = loaded
    return scoring.Scorer(cfg, params, graphdef, tokenizer, mesh, **{"max_len": MAX_LEN, **kw})


def _lm_eval_reference(model, tok, requests, max_len):
    """lm-evaluation-harness's hf backend, one request at a time, in torch."""
    out = []
    for context, continuation in requests:
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        if context == "":
            ctx, cont = [0], tok.encode(continuation, add_special_tokens=False)
        else:
            whole = tok.encode(context + continuation, add_special_tokens=False)
            ctx = tok.encode(context, add_special_tokens=False)
            cont = whole[len(ctx):]
        inp = (ctx + cont)[-(max_len + 1):][:-1]
        with torch.no_grad():
            logits = torch.log_softmax(model(torch.tensor([inp])).logits[0].float(), -1)[len(inp) - len(cont):]
        target = torch.tensor(cont)
        out.append((logits.gather(-1, target[:, None]).sum().item(), bool((logits.argmax(-1) == target).all())))
    return out


@needs_tokenizer
def test_logliks_match_transformers_the_lm_eval_way(hf_model, hf_tokenizer, loaded, tokenizer):
    got = _scorer(loaded, tokenizer, batch_size=4).loglikelihood(REQUESTS)
    want = _lm_eval_reference(hf_model, hf_tokenizer, REQUESTS, MAX_LEN)
    np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=1e-3, rtol=0)
    assert [g[1] for g in got] == [w[1] for w in want]
    assert got[0] == got[6]
    assert got[1] == got[3]  # the trailing space moved: the same tokens


@needs_tokenizer
def test_is_greedy_is_true_exactly_for_the_argmax_continuation(hf_model, loaded, tokenizer):
    scorer = _scorer(loaded, tokenizer, batch_size=4)
    found = 0
    for context in ["Once upon a time", "The answer is", "I think that", "Paris is the capital of", "We went to the"]:
        ids = list(tokenizer._hf.encode(context, add_special_tokens=False).ids)
        with torch.no_grad():
            greedy = hf_model.generate(torch.tensor([ids]), max_new_tokens=2, do_sample=False, pad_token_id=1)[0, len(ids):]
        continuation = tokenizer.decode(greedy)
        if scorer.encode_pairs([(context, continuation)])[0][1] != greedy.tolist():
            continue  # the decoded text does not re-tokenize to the same ids
        found += 1
        (ll, is_greedy), (_, other) = scorer.loglikelihood([(context, continuation), (context, continuation + "x")])
        assert is_greedy and not other and ll < 0
    assert found >= 1


@needs_tokenizer
def test_single_token_choices_share_one_forward_and_equal_the_general_path(loaded, tokenizer):
    contexts = ["Question: Which is larger?\nA. 3\nB. 5\nAnswer:", "Pick one:\n(A) red (B) blue\nAnswer:",
                "Question: Which is larger?\nA. 3\nB. 5\nAnswer:", "Sky colour?", "Question: Is it safe?\nAnswer: "]
    choices = [[" A", " B"], [" A", " B", " C", " D"], [" A", " B"], [" blue", " green sky"], ["Yes", "No"]]
    fast_scorer = _scorer(loaded, tokenizer, batch_size=8)
    fast = fast_scorer.choice_logprobs(contexts, choices)
    # one row per distinct context for the single-token choices; " green sky" needs its own
    assert fast_scorer.stats["requests"] == 12 and fast_scorer.stats["rows"] == 5
    general = _scorer(loaded, tokenizer, batch_size=1)
    for context, opts, got in zip(contexts, choices, fast):
        want = [general.loglikelihood([(context, o)])[0] for o in opts]
        np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=1e-5, rtol=0)
        assert [g[1] for g in got] == [w[1] for w in want]
    assert fast[0] == fast[2]


@needs_tokenizer
def test_results_do_not_depend_on_batch_size_or_order(loaded, tokenizer):
    base = _scorer(loaded, tokenizer, batch_size=4).loglikelihood(REQUESTS)
    order = list(range(len(REQUESTS)))
    random.Random(0).shuffle(order)
    for bs in (1, 4):  # the shapes other tests compile
        shuffled = _scorer(loaded, tokenizer, batch_size=bs).loglikelihood([REQUESTS[i] for i in order])
        got = [None] * len(REQUESTS)
        for i, r in zip(order, shuffled):
            got[i] = r
        np.testing.assert_allclose([g[0] for g in got], [b[0] for b in base], atol=1e-5, rtol=0)
        assert [g[1] for g in got] == [b[1] for b in base]


def test_pack_builds_prefix_trees_whose_ancestors_are_exactly_each_rows_path():
    rng = random.Random(0)
    stems = [tuple(rng.randrange(50) for _ in range(rng.randrange(1, 8))) for _ in range(4)]
    rows = sorted({stem + tuple(rng.randrange(3) for _ in range(rng.randrange(1, 6)))
                   for stem in stems for _ in range(6)})
    for capacity in (0, 8, 20, 10_000):
        trees = scoring._pack(rows, range(len(rows)), capacity)
        assert sorted(i for tree in trees for i in tree.nodes) == list(range(len(rows)))
        for tree in trees:
            assert len(tree.tokens) <= max(capacity, max(len(rows[i]) for i in tree.nodes))
            for i, nodes in tree.nodes.items():
                assert [tree.tokens[n] for n in nodes] == list(rows[i])
                assert [tree.depth[n] for n in nodes] == list(range(len(rows[i])))
                # what a node attends to (kv_end): j <= n < ends[j]; that is exactly its path
                for p, n in enumerate(nodes):
                    assert [j for j in range(n + 1) if n < tree.ends[j]] == nodes[:p + 1]
        if capacity == 10_000:  # one tree, and the shared prefixes are stored once
            assert len(trees) == 1 and len(trees[0].tokens) < sum(map(len, rows))


@needs_tokenizer
@pytest.mark.parametrize("pack_len", [16, 64, 512])
def test_packed_prefix_trees_score_as_one_row_per_prompt(loaded, tokenizer, pack_len):
    contexts = [f"You are an AI assistant.\n\nScenario {i % 3}: pick one.\nA. {a}\nB. {b}\nAnswer:"
                for i, (a, b) in enumerate([("yes", "no"), ("no", "yes")] * 3)]
    requests = REQUESTS + [(c, o) for c in contexts for o in (" A", " B", " A and B")]
    plain = _scorer(loaded, tokenizer, batch_size=4, pack_len=0)
    packed = _scorer(loaded, tokenizer, batch_size=4, pack_len=pack_len)
    want, got = plain.loglikelihood(requests), packed.loglikelihood(requests)
    np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=1e-5, rtol=0)
    assert [g[1] for g in got] == [w[1] for w in want]
    assert packed.stats["rows"] == plain.stats["rows"]
    if pack_len >= 64:  # shared prefixes are computed once
        assert packed.stats["tokens"] < plain.stats["tokens"]


PROMPTS = ["Hello", "The quick brown fox jumps over the lazy dog and then", "Question: What is 2+2?\nAnswer:"]


def _reforward_greedy(loaded, tokenizer, prompt, n):
    """Greedy decoding with no cache: the whole sequence re-run for every new token (right-padded
    to a fixed length, which causal attention does not see)."""
    from flax import nnx

    (cfg, params, graphdef), _ = loaded
    forward = jax.jit(lambda params, tokens: nnx.merge(graphdef, params)(tokens))
    ids = list(tokenizer._hf.encode(prompt, add_special_tokens=False).ids)
    start = len(ids)
    for _ in range(n):
        tokens = np.zeros((1, 64), np.int32)
        tokens[0, :len(ids)] = ids
        nxt = int(np.argmax(np.asarray(forward(params, tokens))[0, len(ids) - 1]))
        if nxt == tokenizer.eos_id:
            break
        ids.append(nxt)
    return ids[start:]


@needs_tokenizer
def test_greedy_generation_matches_transformers_and_a_no_cache_reforward(hf_model, loaded, tokenizer):
    n = 8
    got = _scorer(loaded, tokenizer, batch_size=4, max_len=256).generate_tokens(PROMPTS, n)
    for prompt, tokens in zip(PROMPTS, got):
        ids = list(tokenizer._hf.encode(prompt, add_special_tokens=False).ids)
        with torch.no_grad():
            hf = hf_model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=1)[0, len(ids):]
        hf = hf.tolist()
        hf = hf[:hf.index(0)] if 0 in hf else hf
        assert tokens == hf, prompt
        assert tokens == _reforward_greedy(loaded, tokenizer, prompt, n), prompt
    # one prompt per batch (no left padding) gives the same
    assert _scorer(loaded, tokenizer, batch_size=1, max_len=256).generate_tokens(PROMPTS, n) == got


@needs_tokenizer
def test_sampling_is_seeded_and_stop_strings_cut(loaded, tokenizer):
    scorer = _scorer(loaded, tokenizer, batch_size=4, max_len=256)
    a = scorer.generate(PROMPTS, 6, temperature=1.0, seed=0)
    assert a == scorer.generate(PROMPTS, 6, temperature=1.0, seed=0)
    assert a != scorer.generate(PROMPTS, 6, temperature=1.0, seed=1)
    greedy = scorer.generate(PROMPTS, 6)
    stop = greedy[1][len(greedy[1]) // 2:][:2]
    assert stop and stop in greedy[1]
    cut = scorer.generate(PROMPTS, 6, stop=[stop])
    assert cut[1] == greedy[1].split(stop)[0]
    assert all(c == g.split(stop)[0] for c, g in zip(cut, greedy))


@needs_tokenizer
def test_sharded_mesh_matches_one_device(hf_dir, loaded, tokenizer):
    mesh = sharding.make_mesh(2, 2, 2)
    cfg, params, graphdef = scoring.load_model(hf_dir, mesh)
    assert params["embed_out"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    sharded = scoring.Scorer(cfg, params, graphdef, tokenizer, mesh, batch_size=4, max_len=MAX_LEN)
    one = _scorer(loaded, tokenizer, batch_size=4)
    got, want = sharded.loglikelihood(REQUESTS), one.loglikelihood(REQUESTS)
    np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=1e-4, rtol=0)
    assert [g[1] for g in got] == [w[1] for w in want]
    sharded.max_len = one.max_len = 256
    assert sharded.generate_tokens(PROMPTS, 4) == one.generate_tokens(PROMPTS, 4)


@needs_tokenizer
def test_load_model_reads_an_alignjax_export(hf_dir, loaded, tokenizer, tmp_path):
    from alignjax import checkpoint, convert

    cfg, params = convert.load_hf(hf_dir)
    checkpoint.save_params(tmp_path / "export", params, cfg)
    mesh = _one_device()
    from_export = scoring.load_model(tmp_path / "export", mesh)
    requests = REQUESTS[:3]
    got = scoring.Scorer(*from_export, tokenizer, mesh, max_len=MAX_LEN).loglikelihood(requests)
    assert got == _scorer(loaded, tokenizer).loglikelihood(requests)


@pytest.mark.parametrize("text, n, want", [
    ("A", 2, 0),
    (" B", 2, 1),
    ("(B) because it is honest", 4, 1),
    ("B. The second one.", 4, 1),
    ("[C]", 4, 2),
    ("Answer: B", 2, 1),
    ("The answer is (D).", 4, 3),
    ("I think the correct answer would be C, since", 4, 2),
    ("Option A is wrong; the answer is B", 2, 1),
    ("I choose B", 2, 1),
    ("I'd go with B here.", 2, 1),
    ("Both (A) seem fine", 2, 0),
    ("C", 2, None),  # not one of the options
    ("It could be A or B", 2, None),  # ambiguous
    ("answer: b", 2, None),  # lower case never counts
    ("I am not sure.", 2, None),
    ("", 2, None),
])
def test_parse_letter(text, n, want):
    assert scoring.parse_letter(text, n) == want


def test_parse_letters_counts_extractions():
    picks, stats = scoring.parse_letters(["A", "no idea", "Answer: B"], 2)
    assert picks == [0, None, 1]
    assert stats == {"parsed": 2, "unparsed": 1, "parse_rate": 2 / 3}
