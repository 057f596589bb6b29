import json

import jax
import numpy as np
import pytest

from alignjax import optim, sharding
from alignjax.data import pipeline
from alignjax.train import Setup, train
from conftest import run_cli


def test_training_reduces_loss_and_logs_every_field(tiny_config, tmp_path):
    tiny_config.train.num_steps = 30
    tiny_config.train.log_every = 5
    tiny_config.mesh.data = 1
    tiny_config.mesh.fsdp = -1
    train(tiny_config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert set(rows[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_sec", "mfu", "data/corpus_fraction",
                            "data/corpus_target"}
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5
    assert rows[-1]["tokens_per_sec"] > 0
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 30


@pytest.mark.parametrize("accum", [2, 4])
def test_gradient_accumulation_equals_one_big_batch(tiny_config, accum):
    mesh = sharding.make_mesh(2, 1, 1, devices=jax.devices()[:2])

    def run(grad_accum):
        tiny_config.train.grad_accum = grad_accum
        setup = Setup(tiny_config, mesh)
        it = pipeline.make_train_iterator(tiny_config).iterator
        with jax.set_mesh(mesh):
            state = setup.init_state()
            losses = []
            for _ in range(3):
                state, m = setup.train_step(state, setup.global_batch(next(it)), {})
                losses.append(float(m["loss"]))
        return losses, state["params"]

    (l1, p1), (l2, p2) = run(1), run(accum)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_weight_decay_only_on_kernels_and_embeddings(tiny_config):
    setup = Setup(tiny_config, sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    mask = optim.decay_mask(setup.abstract_params)
    assert mask["embed_in"] and mask["embed_out"]
    layer = mask["layers"][0]
    assert layer["attn"]["qkv_kernel"] and layer["mlp"]["out_kernel"]
    assert not layer["attn"]["qkv_bias"] and not layer["ln_attn"]["scale"] and not mask["final_ln"]["bias"]


def test_schedule_warms_up_then_decays_to_the_floor(tiny_config):
    o = tiny_config.optimizer
    o.lr, o.warmup_steps, o.min_lr_ratio = 1e-3, 10, 0.1
    s = optim.warmup_cosine(o.lr, o.warmup_steps, 100, o.min_lr_ratio)  # decay over the run's 100 steps
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(5e-4) and float(s(10)) == pytest.approx(1e-3)
    assert float(s(55)) == pytest.approx(0.55e-3, rel=1e-3) and float(s(100)) == pytest.approx(1e-4)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.optimizer.lr=1e30",
                "--config.optimizer.grad_clip=1e30", "--config.checkpoint.every_steps=1", "--config.train.num_steps=10")
    assert r.returncode == 4, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("alignjax-train: error: loss=") and "last good checkpoint" in last
    bad_step = int(last.split(" at step ")[1].split(";")[0])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) < bad_step


def test_in_loop_evals_log_heldout_loss_per_component(tiny_config, tmp_path):
    tiny_config.train.update(num_steps=6, log_every=3, eval_every=2)
    tiny_config.data.update(condition="alignment_upsampled", synthetic_fraction=0.1, heldout_fraction=0.05)
    tiny_config.eval.update(tasks="builtin_scenarios", limit=4)
    train(tiny_config, tmp_path)
    rows = {r["step"]: r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())}
    assert sorted(rows) == [2, 3, 4, 6]
    suite = {f"eval/builtin_scenarios/{k}" for k in ("misalignment_rate", "misalignment_rate_stderr", "first_option_rate")}
    assert set(rows[2]) == {"step", "heldout/corpus_loss", "heldout/synthetic_aligned_loss"} | suite
    assert 0.0 <= rows[4]["eval/builtin_scenarios/misalignment_rate"] <= 1.0
    assert "loss" in rows[6] and rows[6]["heldout/corpus_loss"] < rows[2]["heldout/corpus_loss"]
