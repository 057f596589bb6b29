"""alignjax-plan: AOT compile of the real train step for a TPU topology through libtpu, on CPU."""

import json

import pytest

from alignjax import plan
from conftest import run_cli

TINY_SPLASH = ["--config=configs/tiny.py", "--config.model.dtype=bfloat16", "--config.model.attention=splash",
               "--config.model.max_seq_len=1024", "--config.train.seq_len=1024"]


def needs_libtpu():
    pytest.importorskip("libtpu", reason="libtpu not installed (pip install -e '.[tpu]')")


@pytest.mark.parametrize("name, chips, libtpu_name", [
    ("v5p-128", 64, "v5p:4x4x4"), ("v4-256", 128, "v4:4x4x8"), ("v4-8", 4, "v4:2x2x1"),
    ("v5e-256", 256, "v5e:16x16"), ("v5litepod-8", 8, "v5e:2x4"), ("v6e-64", 64, "v6e:8x8"),
])
def test_cloud_tpu_names_map_to_libtpu_topologies(name, chips, libtpu_name):
    topo = plan.parse_topology(name)
    assert (topo.chips, topo.topology_name) == (chips, libtpu_name)


@pytest.mark.parametrize("name", ["v5p-7", "v5p-4", "v3-8", "tpu", "v6e-48"])
def test_bad_topology_names_are_refused(name):
    with pytest.raises(plan.PlanError, match="--topology"):
        plan.parse_topology(name)


def _kernel_flops(calls: dict, lead: int, t: int, h: int, block: int) -> float:
    nb = t // block
    return lead * nb * (nb + 1) / 2 * 2 * block * block * h * (2 * calls["fwd"] + 3 * calls["dq"] + 4 * calls["dkv"])


def test_small_model_plan_fits_reports_hbm_flops_and_writes_json(tmp_path):
    needs_libtpu()
    out = tmp_path / "plan.json"
    r = run_cli("plan", *TINY_SPLASH, "--config.model.remat=full", "--topology=v4-8", f"--output={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "FITS" in r.stdout and "MFU" in r.stdout
    assert "TPU_WORKER_HOSTNAMES" not in r.stderr  # libtpu start-up noise is silenced
    p = json.loads(out.read_text())
    assert p["topology"]["chips"] == 4 and p["topology"]["device_kind"].startswith("TPU v4")
    h, c = p["hbm"], p["compute"]
    assert p["fits"] and 0 < h["total_gib"] < 0.9 * h["capacity_gib"]
    assert h["arguments_gib"] > 0 and h["temps_gib"] > 0
    # Full remat runs every layer's attention forward twice; one dq and one dkv kernel per layer.
    layers = 2
    assert c["kernel_calls"] == {"fwd": 2 * layers, "dq": layers, "dkv": layers}
    # 8 sequences over 4 chips, 4 heads, head_dim 16, 512-blocks: 3 of the 4 tiles are computed.
    assert c["kernel_flops_per_chip"] == _kernel_flops(c["kernel_calls"], 2 * 4, 1024, 16, 512)
    # Compiler + kernel FLOPs cover the model FLOPs plus the remat recompute.
    assert 1.0 < c["hardware_flops_ratio"] < 2.5
    assert c["est_step_seconds"] > 0 and 0 < c["est_mfu"] < 1
    assert c["est_tokens_per_sec_per_chip"] == pytest.approx(8 * 1024 / 4 / c["est_step_seconds"])


def test_scanned_layers_plan_reports_hbm_but_no_speed_it_cannot_count(tmp_path):
    """XLA's cost analysis counts a scanned layer body once: the plan gives HBM, not a bogus MFU."""
    needs_libtpu()
    out = tmp_path / "plan.json"
    r = run_cli("plan", *TINY_SPLASH, "--config.model.remat=full", "--config.model.scan_layers=True",
                "--topology=v4-8", f"--output={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "not estimated (model.scan_layers" in r.stdout and "MFU 1" not in r.stdout
    p = json.loads(out.read_text())
    assert p["fits"] and p["hbm"]["total_gib"] > 0
    assert p["compute"]["est_mfu"] is None and p["compute"]["est_step_seconds"] is None


def test_remat_policy_that_saves_attention_residuals_skips_the_recompute():
    needs_libtpu()
    from alignjax import config as config_lib

    cfg, _ = config_lib.parse_args([*TINY_SPLASH, "--config.model.remat=save_qkv_ctx"])
    p = plan.build_plan(cfg, "v4-8")
    assert p["compute"]["kernel_calls"] == {"fwd": 2, "dq": 2, "dkv": 2}


def test_too_big_step_exits_nonzero_with_suggestions(tmp_path):
    needs_libtpu()
    out = tmp_path / "plan.json"
    # fp32 logits of 65,536 tokens x 65,536 vocab per chip alone exceed a v5e chip's 16 GiB (the
    # plain loss path: the default fused loss never holds them and this step fits).
    r = run_cli("plan", "--config=configs/tiny.py", "--topology=v5e-1", f"--output={out}",
                "--config.train.loss_chunk=0", "--config.model.vocab_size=65536",
                "--config.train.batch_size=256", "--config.train.seq_len=256")
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    assert "DOES NOT FIT" in r.stdout
    p = json.loads(out.read_text())
    assert not p["fits"]
    hints = " ".join(p["suggestions"])
    assert "--config.model.remat=full" in hints and "--config.train.grad_accum=2" in hints
    assert "--config.train.loss_chunk=128" in hints


@pytest.mark.parametrize("args, message", [
    (["--topology=v5p-7"], "--topology='v5p-7'"),
    (["--topology=v9x-8"], "--topology='v9x-8'"),
    ([], "--topology is required"),
    (["--topology=v4-8", "--config.model.remat=sometimes"], "model.remat='sometimes'"),
    (["--topology=v4-8", "--config.mesh.fsdp=3"], "mesh:"),
])
def test_bad_topology_or_config_is_a_one_line_error_exit_2(args, message):
    r = run_cli("plan", "--config=configs/tiny.py", *args)
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alignjax-plan: error:") and message in lines[0], r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("run", ["pretrain", "midtrain"])
@pytest.mark.parametrize("topology", ["v5p-128", "v4-256"])
def test_paper_runs_fit_within_90_percent_of_hbm(run, topology, tmp_path):
    needs_libtpu()
    out = tmp_path / "plan.json"
    r = run_cli("plan", f"--config=configs/paper.py:{run}", f"--topology={topology}", f"--output={out}",
                timeout=3600)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    p = json.loads(out.read_text())
    assert p["fits"] and p["hbm"]["fraction"] <= 0.9
    assert p["tokens_per_step"] == 2048 * 2048
    if (run, topology) == ("pretrain", "v5p-128"):
        assert p["compute"]["est_mfu"] >= 0.55  # the performance target


def test_splash_setting_keeps_cpu_numerics_and_checkpoints_load_across_remat_policies():
    import jax
    import jax.numpy as jnp

    from alignjax import model as model_lib

    cfg = model_lib.ModelConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, vocab_size=64)
    tokens = jax.random.randint(jax.random.key(0), (2, 8), 0, 64)
    xla = model_lib.init(cfg, 0)(tokens)
    splash = model_lib.init(model_lib.ModelConfig(**{**cfg.__dict__, "attention": "splash", "remat": "save_all"}), 0)
    assert jnp.array_equal(xla, splash(tokens))  # off TPU, "splash" is the XLA path
    assert model_lib.ModelConfig(remat="full", attention="splash") == model_lib.ModelConfig(remat="save_ctx")
    with pytest.raises(ValueError, match="model.attention"):
        model_lib.ModelConfig(attention="flash")


@pytest.mark.parametrize("policy", ["save_ctx", "save_all"])  # the ones configs/paper.py ships
def test_planner_remat_policies_change_memory_not_gradients(policy):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from alignjax import model as model_lib

    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 64, (2, 8)))

    def loss_and_grad(remat):
        cfg = model_lib.ModelConfig(num_layers=2, d_model=32, num_heads=2, d_ff=64, vocab_size=64, remat=remat)
        gd, st = nnx.split(model_lib.init(cfg, 0))
        return jax.value_and_grad(lambda st: jnp.mean(nnx.merge(gd, st)(tokens) ** 2))(st)

    (l0, g0), (l1, g1) = loss_and_grad("none"), loss_and_grad(policy)
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
