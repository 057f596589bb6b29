"""Device mesh and THE logical-axis -> mesh-axis rules table.

Every parameter carries logical axis names (``axes=`` metadata on its ``nnx.Param``);
every large activation is constrained with ``constrain(x, logical_axes)``. This file is
the only place that decides which mesh axis a logical axis lands on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from alignjax.config import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Parameters shard their d_model axis over fsdp (ZeRO-3 style) and their wide axes
# (heads, mlp, vocab) over tensor. Activations keep the batch over (data, fsdp): without
# these constraints XLA may gather activations instead of weights (see
# shared/notes/tpu-planning.md: 147 GiB vs 25 GiB of temporaries at 6.9B).
LOGICAL_AXIS_RULES: dict[str, str | tuple[str, ...] | None] = {
    # parameters
    "vocab": "tensor",
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "qkv": None,
    "head_dim": None,
    "norm": None,
    # activations
    "act_batch": ("data", "fsdp"),
    "act_seq": None,
    "act_embed": None,
    "act_heads": "tensor",
    "act_mlp": "tensor",
    "act_vocab": "tensor",
}


class MeshError(ConfigError, ValueError):
    """A mesh that does not fit the devices: a one-line config error (exit 2 from the CLIs)."""


def mesh_shape(data: int = -1, fsdp: int = 1, tensor: int = 1, num_devices: int | None = None) -> tuple[int, ...]:
    """(data, fsdp, tensor) sizes over ``num_devices``; one axis may be -1 to take the remaining
    devices. Without ``num_devices`` only the axes themselves are checked and -1 stays."""
    shape = [data, fsdp, tensor]
    for name, size in zip(MESH_AXES, shape):
        if isinstance(size, bool) or not isinstance(size, int) or not (size > 0 or size == -1):
            raise MeshError(f"mesh.{name}={size!r}: must be a positive integer or -1 (the remaining devices)")
    if shape.count(-1) > 1:
        raise MeshError(f"mesh: at most one axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    if num_devices is None:
        return tuple(shape)
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise MeshError(f"mesh: {num_devices} devices do not divide by the fixed axes' product {known} "
                            f"(data={data} fsdp={fsdp} tensor={tensor})")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        there = "is 1 device" if num_devices == 1 else f"are {num_devices} devices"
        raise MeshError(f"mesh data*fsdp*tensor = {math.prod(shape)} but there {there} "
                        f"(data={data} fsdp={fsdp} tensor={tensor})")
    return tuple(shape)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """Mesh over (data, fsdp, tensor); one axis may be -1 to take the remaining devices."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices).reshape(mesh_shape(data, fsdp, tensor, len(devices))), MESH_AXES)


def logical_to_spec(axes: Sequence[str | None], shape: Sequence[int] | None = None, mesh: Mesh | None = None) -> P:
    """PartitionSpec for logical ``axes``. With ``shape`` and ``mesh``, an axis whose size the
    mesh axes do not divide stays replicated (e.g. 4 heads on tensor=8)."""
    spec, used = [], set()
    for i, name in enumerate(axes):
        target = LOGICAL_AXIS_RULES[name] if name is not None else None
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        # A mesh axis may appear once per spec; later logical axes lose it.
        targets = tuple(t for t in targets if t not in used)
        if mesh is not None:
            targets = tuple(t for t in targets if mesh.shape[t] > 1)
            if shape is not None and targets and shape[i] % math.prod(mesh.shape[t] for t in targets):
                targets = ()
        used.update(targets)
        spec.append(None if not targets else targets[0] if len(targets) == 1 else targets)
    return P(*spec)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """with_sharding_constraint by logical axes under the ambient mesh (a no-op without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(axes, x.shape, mesh))


def tree_shardings(axes_tree, shapes_tree, mesh: Mesh):
    """NamedShardings for a pytree of arrays given a matching pytree of logical-axes tuples."""
    return jax.tree.map(
        lambda axes, x: NamedSharding(mesh, logical_to_spec(axes, x.shape, mesh)),
        axes_tree,
        shapes_tree,
        is_leaf=lambda a: isinstance(a, tuple),
    )


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(("act_batch",) + (None,) * (ndim - 1), mesh=mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
