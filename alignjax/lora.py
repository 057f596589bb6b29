"""LoRA / rsLoRA adapters on GPT-NeoX, applied functionally (model.py stays untouched).

A target kernel W (its leading ``k`` axes are the input, the rest the output) gets
A [in..., r] and B [r, out...]; the model runs with W_eff = W + scale * A @ B (``apply``), which
is the same function as the adapter path x@W + scale * (x@A)@B. scale = alpha / r (LoRA) or
alpha / sqrt(r) (rsLoRA, Kalajdzievski 2023). A is Kaiming-uniform (PEFT's default), B = 0, so
training starts exactly at the base model. Only the adapters are trained; the base is frozen.

Targets (``lora.targets``): qkv (attn.qkv_kernel [d, heads, 3, head_dim]), attn_out
(attn.out_kernel [heads, head_dim, d]), mlp_in (mlp.in_kernel [d, ff]), mlp_out
(mlp.out_kernel [ff, d]).

Export: a LoRA run's checkpoints hold the adapters only; ``model_state.load_params`` on the run
merges them into its base (the run's ``checkpoint.init_from``), so eval and ``alignjax-convert``
take the run directly, and

    python -m alignjax.lora --checkpoint=runs/lora --output=ckpt/merged   # model_state.merge_main
    alignjax-convert --from=alignjax --input=ckpt/merged --output=hf/merged
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

# target name -> (module, kernel, number of leading input axes)
TARGETS = {
    "qkv": ("attn", "qkv_kernel", 1),
    "attn_out": ("attn", "out_kernel", 2),
    "mlp_in": ("mlp", "in_kernel", 1),
    "mlp_out": ("mlp", "out_kernel", 1),
}


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    rslora: bool
    targets: tuple[str, ...]

    @property
    def scale(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.rslora else self.rank)

    @classmethod
    def from_config(cls, lora_cfg) -> "LoraSpec | None":
        if lora_cfg.rank <= 0:
            return None
        targets = tuple(t for t in lora_cfg.targets.split(",") if t)
        bad = [t for t in targets if t not in TARGETS]
        if bad or not targets:
            raise ValueError(f"lora.targets={lora_cfg.targets!r}: unknown target {bad[0] if bad else '(none)'!r}; "
                             f"valid: {', '.join(TARGETS)}")
        return cls(int(lora_cfg.rank), float(lora_cfg.alpha), bool(lora_cfg.rslora), targets)


def _sites(spec: LoraSpec, params):
    """(layer key, module, kernel, input axes) of every adapted kernel."""
    for i in params["layers"]:
        for t in spec.targets:
            module, kernel, k = TARGETS[t]
            yield i, module, kernel, k


def abstract(spec: LoraSpec, abstract_params, param_axes):
    """(ShapeDtypeStructs, logical axes) of the adapters: {"layers": {i: {module: {kernel: {a, b}}}}}."""
    shapes, axes = {"layers": {}}, {"layers": {}}
    for i, module, kernel, k in _sites(spec, abstract_params):
        w, w_axes = abstract_params["layers"][i][module][kernel], param_axes["layers"][i][module][kernel]
        a = jax.ShapeDtypeStruct((*w.shape[:k], spec.rank), jnp.float32)
        b = jax.ShapeDtypeStruct((spec.rank, *w.shape[k:]), jnp.float32)
        shapes["layers"].setdefault(i, {}).setdefault(module, {})[kernel] = {"a": a, "b": b}
        axes["layers"].setdefault(i, {}).setdefault(module, {})[kernel] = {"a": (*w_axes[:k], None),
                                                                           "b": (None, *w_axes[k:])}
    return shapes, axes


def init(spec: LoraSpec, abstract_params, seed: int):
    """A ~ Kaiming-uniform (bound 1/sqrt(fan_in), as PEFT's kaiming_uniform_(a=sqrt(5))), B = 0."""
    shapes, _ = abstract(spec, abstract_params, _dummy_axes(abstract_params))
    key = jax.random.key(seed)
    out = {"layers": {}}
    for n, (i, module, kernel, k) in enumerate(_sites(spec, abstract_params)):
        s = shapes["layers"][i][module][kernel]
        bound = 1.0 / math.sqrt(math.prod(s["a"].shape[:-1]))
        a = jax.random.uniform(jax.random.fold_in(key, n), s["a"].shape, jnp.float32, -bound, bound)
        out["layers"].setdefault(i, {}).setdefault(module, {})[kernel] = {"a": a, "b": jnp.zeros(s["b"].shape, jnp.float32)}
    return out


def _dummy_axes(params):
    return jax.tree.map(lambda x: (None,) * len(x.shape), params)


def delta(a, b):
    """A [in..., r] @ B [r, out...] -> [in..., out...], W's layout."""
    return jnp.tensordot(a, b, axes=1)


def apply(base, adapters, scale: float):
    """The params the model runs with: W + scale * A @ B on every adapted kernel (a new tree;
    ``base`` is not modified). Under jit the gradient w.r.t. the adapters flows through this."""
    out = dict(base, layers={i: {m: dict(v) if isinstance(v, dict) else v for m, v in layer.items()}
                             for i, layer in base["layers"].items()})
    for i, layer in adapters["layers"].items():
        for module, kernels in layer.items():
            for kernel, ab in kernels.items():
                w = base["layers"][i][module][kernel]
                out["layers"][i][module][kernel] = w + (scale * delta(ab["a"], ab["b"])).astype(w.dtype)
    return out


def run_spec(run) -> tuple[LoraSpec | None, dict]:
    """The LoRA spec and full config of a training run (a RunDir; spec None: not a LoRA run)."""
    cfg = run.load_config()
    lc = cfg.get("lora", {})
    if not lc.get("rank"):
        return None, cfg
    return LoraSpec(int(lc["rank"]), float(lc["alpha"]), bool(lc["rslora"]),
                    tuple(t for t in lc["targets"].split(",") if t)), cfg


def int_keys(tree):
    """Orbax restores the layer index keys as strings; the params use ints."""
    if isinstance(tree, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): int_keys(v) for k, v in tree.items()}
    return tree


if __name__ == "__main__":  # the merge CLI lives in model_state, which imports this module
    from alignjax import model_state

    raise SystemExit(model_state.merge_main())
