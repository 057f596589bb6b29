"""SFT and DPO: loss math, masking, the chat embedding resize, the loop end to end, resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import checkpoint as ckpt_lib
from alignjax import model_state, posttrain, sharding
from alignjax.config import load_config_file
from alignjax.data import chat
from alignjax.model import ModelConfig
from alignjax.objectives import loss_fn
from alignjax.train import Setup, train
from conftest import REPO, run_cli


def chat_cfg(objective: str, data, **train):
    """A 2-layer model on a small chat set (bytes tokenizer): seconds per run on a CPU."""
    cfg = load_config_file(str(REPO / "configs" / f"{objective}.py"))
    cfg.model.update(dict(max_seq_len=128))
    cfg.chat.data = str(data)
    cfg.train.update({**dict(num_steps=4, batch_size=4, seq_len=96, log_every=1, progress_bar=False), **train})
    cfg.checkpoint.update(dict(every_steps=2, async_save=False))
    cfg.mesh.update(dict(data=2, fsdp=2, tensor=2))  # 8 fake devices: every axis sharded
    return cfg


def write_chats(path, n=48, bad=0):
    """Short conversations (the assistant answers a letter and a word); ``bad`` of them have no
    assistant turn."""
    rows = []
    for i in range(n):
        q = f"Pick one: A. red{i % 7} B. blue{i % 5}"
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": "(A) red" if i % 2 else "(B) blue"}]
        rows.append({"messages": msgs[:1] if i < bad else msgs})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_pairs(path, n=32):
    rows = [{"prompt": f"Pick one: A. up{i % 5} B. down{i % 3}", "chosen": f"(A) up{i % 5}",
             "rejected": f"(B) down{i % 3}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- pure math


def test_dpo_loss_and_rewards_equal_a_numpy_computation():
    rng = np.random.default_rng(0)
    pi_c, pi_r, ref_c, ref_r = (rng.normal(-40, 10, 16).astype(np.float32) for _ in range(4))
    beta = 5.0
    loss, rc, rr = jax.jit(posttrain.dpo_terms, static_argnums=4)(pi_c, pi_r, ref_c, ref_r, beta)
    z = beta * ((pi_c.astype(np.float64) - ref_c) - (pi_r.astype(np.float64) - ref_r))
    np.testing.assert_allclose(loss, np.logaddexp(0.0, -z), rtol=1e-5, atol=1e-5)  # -log sigmoid(z)
    np.testing.assert_allclose(rc, beta * (pi_c - ref_c), rtol=1e-5)
    np.testing.assert_allclose(rr, beta * (pi_r - ref_r), rtol=1e-5)
    # and through dpo_loss with precomputed reference values: sums and accuracy over the pairs
    setup = Setup(chat_cfg("dpo", "builtin"), sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    params = setup._init_params(0)
    T = 12
    batch = {f"{side}_{k}": v for side in ("chosen", "rejected") for k, v in (
        ("inputs", rng.integers(3, 200, (4, T)).astype(np.int32)), ("targets", rng.integers(3, 200, (4, T)).astype(np.int32)),
        ("weights", (np.arange(T) >= 5).astype(np.float32)[None].repeat(4, 0)), ("positions", np.arange(T)[None].repeat(4, 0)))}
    batch.update(ref_chosen=ref_c[:4], ref_rejected=ref_r[:4])
    total, count, sums = posttrain.dpo_loss(setup.graphdef, beta, params, {}, batch)
    # pi is the SUM of the response tokens' log-probs, each row on its own
    logp = lambda side, i: np.asarray(posttrain.token_logps(  # noqa: E731
        setup.graphdef, params, batch[f"{side}_inputs"][i:i + 1], batch[f"{side}_targets"][i:i + 1]))[0]
    pc = np.array([logp("chosen", i)[5:].sum() for i in range(4)])
    pr = np.array([logp("rejected", i)[5:].sum() for i in range(4)])
    z = beta * ((pc - ref_c[:4]) - (pr - ref_r[:4]))
    assert float(count) == 4
    np.testing.assert_allclose(float(total), np.logaddexp(0.0, -z).sum(), rtol=1e-4)
    np.testing.assert_allclose(float(sums["margin"]), z.sum(), rtol=1e-4)
    assert float(sums["reward_accuracy"]) == (z > 0).sum()
    np.testing.assert_allclose(float(sums["chosen_reward"]), (beta * (pc - ref_c[:4])).sum(), rtol=1e-4)


def test_non_assistant_tokens_give_zero_loss_and_zero_gradient(tmp_path):
    """Real SFT rows: changing the target of any weight-0 position (prompt, role markers,
    padding), and the inputs after the last assistant token, changes neither the loss nor any
    gradient: those positions contribute exactly nothing."""
    cfg = chat_cfg("sft", write_chats(tmp_path / "c.jsonl"))
    tok = chat.chat_tokenizer("bytes")
    batch = next(chat.sft_iterator(cfg, tok).iterator)
    w = batch["weights"]
    assert 0 < w.sum() < w.size and (w[batch["segment_ids"] == 0] == 0).all()
    setup = Setup(cfg, sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    params = setup._init_params(0)
    grad = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, setup.graphdef, b), has_aux=True))
    (nll, count), g = grad(params, batch)
    assert float(count) == w.sum()
    perturbed = dict(batch)
    rng = np.random.default_rng(1)
    perturbed["targets"] = np.where(w == 0, rng.integers(0, 261, w.shape), batch["targets"]).astype(np.int32)
    last = np.array([np.nonzero(r)[0].max() for r in w])  # the last assistant target of each row
    after = np.arange(w.shape[1])[None] > last[:, None]
    perturbed["inputs"] = np.where(after, rng.integers(0, 261, w.shape), batch["inputs"]).astype(np.int32)
    assert (perturbed["targets"] != batch["targets"]).any() and (perturbed["inputs"] != batch["inputs"]).any()
    (nll2, _), g2 = grad(params, perturbed)
    assert float(nll2) == float(nll)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g2)):
        np.testing.assert_array_equal(a, b)
    # and the loss is the weighted mean: with all weights 0 it is 0 with zero gradient
    (nll0, _), g0 = grad(params, {**batch, "weights": np.zeros_like(w)})
    assert float(nll0) == 0.0 and all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(g0))


def test_embedding_resize_sets_new_rows_to_the_mean_and_grows_the_vocab(tmp_path):
    small = ModelConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, vocab_size=259, max_seq_len=64)
    from alignjax.model import init
    from flax import nnx

    params = nnx.state(init(small, 0), nnx.Param).to_pure_dict()
    ckpt_lib.save_params(tmp_path / "base", params, small)
    cfg = chat_cfg("sft", write_chats(tmp_path / "c.jsonl"))
    cfg.checkpoint.init_from = str(tmp_path / "base")
    cfg.chat.epochs = 2
    given, before = cfg, cfg.to_dict()
    cfg, tok, info = posttrain.prepare(cfg)  # bytes: 258 base ids + 3 chat tokens = 261 > 259
    assert given.to_dict() == before and cfg is not given  # the caller's config is left as it was
    assert cfg.model.vocab_size == 384 and cfg.model.d_model == 32 and cfg.model.num_layers == 1
    rows = chat.count_examples(cfg, tok)  # packed rows of one epoch
    assert rows > 4 and cfg.train.num_steps == -(-2 * rows // cfg.train.batch_size)
    assert info.added_ids == {"<|system|>": 258, "<|user|>": 259, "<|assistant|>": 260} and info.base_vocab_size == 258
    setup = Setup(cfg, sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    new = model_state.load_start_params(cfg.checkpoint.init_from, 0, setup.model_cfg, setup.param_shardings,
                                        setup.mesh, info)
    ein, eout = np.asarray(new["embed_in"]), np.asarray(new["embed_out"])
    assert ein.shape == (384, 32) and eout.shape == (32, 384)
    mean_in, mean_out = params["embed_in"][:258].mean(0), params["embed_out"][:, :258].mean(1)
    np.testing.assert_array_equal(ein[:258], params["embed_in"][:258])  # old rows untouched
    np.testing.assert_array_equal(eout[:, :258], params["embed_out"][:, :258])
    for i in (258, 259, 260, 300, 383):  # the chat tokens (258 was a padding row) and the grown rows
        np.testing.assert_allclose(ein[i], mean_in, rtol=1e-6)
        np.testing.assert_allclose(eout[:, i], mean_out, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(new["final_ln"]["scale"]), params["final_ln"]["scale"])


# ----------------------------------------------------------------------------- the loop


def _final_params(workdir):
    return jax.device_get(model_state.load_params(workdir)[1])


def test_sft_run_resumed_mid_way_equals_an_uninterrupted_one(tmp_path):
    data = write_chats(tmp_path / "c.jsonl")
    args = ["--config=configs/sft.py", f"--config.chat.data={data}", "--config.model.max_seq_len=128",
            "--config.train.num_steps=4", "--config.train.batch_size=4", "--config.train.seq_len=96",
            "--config.checkpoint.every_steps=2", "--config.checkpoint.async_save=false", "--config.mesh.data=1"]
    r = run_cli("train", *args, f"--workdir={tmp_path / 'a'}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train", *args, f"--workdir={tmp_path / 'b'}", env={"ALIGNJAX_FAULT_KILL_AFTER_SAVE": "2"})
    assert r.returncode != 0  # killed right after saving step 2
    r = run_cli("train", *args, f"--workdir={tmp_path / 'b'}")
    assert r.returncode == 0 and "resumed from" in r.stderr, r.stderr[-2000:]
    rows = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [m["loss"] for m in rows("a")][2:] == [m["loss"] for m in rows("b")][-2:]
    for x, y in zip(jax.tree.leaves(_final_params(tmp_path / "a")), jax.tree.leaves(_final_params(tmp_path / "b"))):
        np.testing.assert_array_equal(x, y)
    info = json.loads((tmp_path / "a" / posttrain.CHAT_TOKENIZER_FILE).read_text())
    assert info["added_ids"]["<|assistant|>"] == 260
    from alignjax.eval.run import chat_template, default_tokenizer

    assert default_tokenizer(str(tmp_path / "a")) == "bytes+chat" and chat_template("auto", str(tmp_path / "a")) == "alignjax"


def test_bad_conversations_are_counted_and_skipped_up_to_the_threshold(tmp_path):
    data = write_chats(tmp_path / "c.jsonl", n=48, bad=3)
    cfg = chat_cfg("sft", data, num_steps=2, eval_every=2)
    cfg.chat.max_bad_fraction = 0.2
    cfg.eval.update(dict(tasks="builtin_scenarios", limit=2))  # in-loop evals: generation through the template
    last = train(cfg, tmp_path / "ok")
    assert np.isfinite(last["loss"]) and 0.0 <= last["eval/builtin_scenarios/nonmatch_rate"] <= 1.0
    audit = json.loads((tmp_path / "ok" / "data_audit.json").read_text())["sft"]
    assert audit["components"]["sft"]["skipped"] == {"no_assistant": 3} and audit["tokens"] > 0
    r = run_cli("train", "--config=configs/sft.py", f"--workdir={tmp_path / 'bad'}", f"--config.chat.data={data}",
                "--config.chat.max_bad_fraction=0.01", "--config.train.seq_len=96", "--config.model.max_seq_len=128")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("alignjax-train: error:") and "max_bad_fraction" in err


def test_dpo_precomputed_reference_equals_on_the_fly(tmp_path):
    data = write_pairs(tmp_path / "p.jsonl")
    out = {}
    for ref in ("on_the_fly", "precompute"):
        cfg = chat_cfg("dpo", data, num_steps=3)
        cfg.dpo.reference = ref
        train(cfg, tmp_path / ref)
        out[ref] = [json.loads(x) for x in (tmp_path / ref / "metrics.jsonl").read_text().splitlines()]
    a, b = out["on_the_fly"], out["precompute"]
    assert a[0]["loss"] == pytest.approx(np.log(2), abs=1e-5)  # policy == reference at step 1
    assert a[0]["margin"] == pytest.approx(0, abs=1e-4) and set(a[0]) >= {
        "loss", "reward_accuracy", "chosen_reward", "rejected_reward", "margin"}
    for x, y in zip(a, b):
        for k in ("loss", "margin", "chosen_reward", "rejected_reward"):
            assert x[k] == pytest.approx(y[k], rel=1e-3, abs=1e-4), k
    table = np.load(tmp_path / "precompute" / posttrain.REFERENCE_FILE)
    assert table.shape == (32, 2) and np.isfinite(table).all() and (table < 0).all()
    assert a[-1]["margin"] > 0  # the policy moved towards the chosen responses


# ----------------------------------------------------------------------------- tiny end to end


def _eval(checkpoint, out, persona="none"):
    r = run_cli("eval", f"--checkpoint={checkpoint}", "--tasks=builtin_scenarios", "--split=heldout",
                "--limit=12", "--formats=w1_ab,w1_ba", "--mode=generate", "--max_new_tokens=6",
                "--chat_template=auto", f"--persona={persona}", f"--output={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(next(out.glob("results_*.json")).read_text())["results"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """SFT of a fresh tiny model on the builtin chat set (configs/sft.py:tiny)."""
    d = tmp_path_factory.mktemp("sft")
    cfg = load_config_file(str(REPO / "configs" / "sft.py"))
    cfg.train.update(dict(num_steps=40, batch_size=8, progress_bar=False))
    cfg.checkpoint.async_save = False
    train(cfg, d / "run")
    return d


def test_sft_raises_the_parse_rate_of_generation_evals(sft_run):
    before = sft_run / "before"  # the same model at step 0: the tiny config, no training
    cfg = load_config_file(str(REPO / "configs" / "sft.py"))
    cfg.train.update(dict(num_steps=1, progress_bar=False))
    cfg.optimizer.lr = 1e-12  # lr must be > 0; this one leaves the weights as initialised
    cfg.checkpoint.async_save = False
    train(cfg, before)
    r0 = _eval(before, sft_run / "e0", "none,ai")
    r1 = _eval(sft_run / "run", sft_run / "e1", "none,ai")
    for key in ("builtin_scenarios@none", "builtin_scenarios@ai"):
        assert r1[key]["nonmatch_rate,none"] < 0.5 < r0[key]["nonmatch_rate,none"], (r0, r1)


def test_dpo_on_pairs_preferring_one_option_raises_its_rate(sft_run, tmp_path):
    """The tiny SFT model answers "(A)" to nearly everything; DPO on pairs whose chosen answer is
    always the SECOND option raises the rate of second-option answers, and they still parse."""
    rows = []
    for e in chat.builtin_examples("dpo")[:256]:
        second, first = (e["chosen"], e["rejected"]) if e["chosen"].startswith("(B)") else (e["rejected"], e["chosen"])
        rows.append({"prompt": e["prompt"], "chosen": second, "rejected": first})
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config_file(str(REPO / "configs" / "dpo.py"))
    cfg.chat.data = str(tmp_path / "b.jsonl")
    cfg.checkpoint.init_from = str(sft_run / "run")
    cfg.train.update(dict(num_steps=12, batch_size=8, progress_bar=False))
    cfg.checkpoint.async_save = False
    train(cfg, tmp_path / "dpo")
    r0 = _eval(sft_run / "run", tmp_path / "e0")["builtin_scenarios"]
    r1 = _eval(tmp_path / "dpo", tmp_path / "e1")["builtin_scenarios"]
    assert r1["nonmatch_rate,none"] < 0.5, r1
    assert 1 - r1["first_option_rate,none"] > (1 - r0["first_option_rate,none"]) + 0.3, (r0, r1)
