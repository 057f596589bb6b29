import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from alignjax import sharding
from alignjax.data import pipeline
from alignjax.train import Setup


def _losses(cfg, mesh_shape, steps=5):
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    mesh = sharding.make_mesh(*mesh_shape, devices=devices)
    setup = Setup(cfg, mesh)
    it = pipeline.make_train_iterator(cfg).iterator
    losses = []
    with jax.set_mesh(mesh):
        state = setup.init_state()
        for _ in range(steps):
            state, m = setup.train_step(state, setup.global_batch(next(it)), {})
            losses.append(float(m["loss"]))
    return np.array(losses), state


def test_five_steps_give_the_same_losses_on_every_mesh(tiny_config):
    assert jax.device_count() == 8
    ref, _ = _losses(tiny_config, (1, 1, 1))
    assert ref[-1] < ref[0]
    for shape in [(8, 1, 1), (1, 8, 1), (2, 2, 2)]:
        losses, state = _losses(tiny_config, shape)
        np.testing.assert_allclose(losses, ref, rtol=1e-5, err_msg=str(shape))
    # On (2,2,2) parameters really are split: d_model over fsdp, heads over tensor.
    qkv = state["params"]["layers"][0]["attn"]["qkv_kernel"]
    assert qkv.sharding.spec == P("fsdp", "tensor", None, None)
    assert state["opt_state"][1][0].mu["layers"][0]["attn"]["qkv_kernel"].sharding.spec == P("fsdp", "tensor", None, None)


def test_rules_drop_axes_that_do_not_divide():
    mesh = sharding.make_mesh(1, 1, 8)
    assert sharding.logical_to_spec(("embed", "heads", "qkv", "head_dim"), (64, 4, 3, 16), mesh) == P(None, None, None, None)
    assert sharding.logical_to_spec(("embed", "mlp"), (64, 256), mesh) == P(None, "tensor")
    mesh = sharding.make_mesh(2, 4, 1)
    assert sharding.logical_to_spec(("act_batch", "act_seq"), (8, 16), mesh) == P(("data", "fsdp"), None)


def test_mesh_shape_errors_are_explicit():
    with pytest.raises(ValueError, match="devices"):
        sharding.make_mesh(3, 1, 1)
    with pytest.raises(ValueError, match="at most one"):
        sharding.make_mesh(-1, -1, 1)
    assert sharding.make_mesh(-1, 2, 2).shape == {"data": 2, "fsdp": 2, "tensor": 2}
