"""Plan a training run on a Cloud TPU pod from any host (``alignjax-plan``).

    alignjax-plan --config=configs/paper.py:pretrain --topology=v5p-128 [--num_slices=1]
                  [--stage=pretrain] [--output=plan.json] [--hbm_fraction=0.9] [--config.x=y ...]

The real train step (``train.Setup(cfg, mesh).train_step``, the one ``alignjax-train`` runs) is
lowered for abstract state and batch on a mesh of the topology's devices and compiled ahead of
time by libtpu (``jax.experimental.topologies``: no TPU needed). From the compiled executable:

- per-chip HBM (XLA memory analysis: arguments, outputs, aliased/donated, temporaries) against
  the chip's capacity; the plan fits when the total is within ``hbm_fraction`` of it;
- compiler FLOPs and the estimated step time: XLA's cost-analysis ``optimal_seconds``, a
  roofline (each op at peak FLOP/s or peak HBM bandwidth, whichever binds; no collectives'
  latency, no overlap losses). Pallas kernels (splash attention) are opaque to the cost
  analysis: their FLOPs are counted analytically from the kernel calls in the compiled HLO and
  their time added at peak FLOP/s;
- model FLOPs per token ``6N + 6*L*T*d`` (PaLM appendix B; ``model.flops_per_token``: N = all
  parameters but the input embedding, causal attention counted at half the dense T x T work),
  hence estimated tokens/s per chip and MFU = model FLOP/s / (chips x peak bf16 FLOP/s).

Exit codes: 0 fits, 1 does not fit (with suggestions), 2 bad topology/config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time

from alignjax import attention, metrics, schema, sharding, train
from alignjax import config as config_lib
from alignjax import model as model_lib
from alignjax.config import ConfigError

GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class TpuSpec:
    generation: str  # libtpu topology prefix
    peak_flops: float  # dense bf16 FLOP/s per chip (Cloud TPU datasheets)
    hbm_gib: float  # HBM per chip
    hbm_gbps: float  # HBM bandwidth per chip, GB/s
    cores_per_chip: int  # v4/v5p names count TensorCores (2 per chip, one "megacore" device)
    chip_config: str
    dims: int  # torus dimensions


_PEAK = metrics.PEAK_FLOPS  # the same table alignjax-train's MFU uses, keyed by device_kind
TPUS = {
    "v4": TpuSpec("v4", _PEAK["TPU v4"], 32, 1200, 2, "megacore", 3),
    "v5p": TpuSpec("v5p", _PEAK["TPU v5p"], 95, 2765, 2, "megacore", 3),
    "v5e": TpuSpec("v5e", _PEAK["TPU v5 lite"], 16, 819, 1, "default", 2),
    "v6e": TpuSpec("v6e", _PEAK["TPU v6 lite"], 32, 1640, 1, "default", 2),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e"}


class PlanError(Exception):
    """A bad topology name or a plan that cannot be built. One line."""


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str  # the Cloud TPU name, e.g. v5p-128
    spec: TpuSpec
    chips: int
    shape: tuple[int, ...]  # chips along each torus axis

    @property
    def topology_name(self) -> str:  # libtpu's, e.g. "v5p:4x4x4"
        return f"{self.spec.generation}:{'x'.join(map(str, self.shape))}"

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        # v4/v5p hosts hold 2x2x1 chips; v5e/v6e hosts 2x2, or all 8 chips of a one-host slice.
        if self.spec.dims == 2 and self.chips <= 8:
            return (*self.shape, 1)
        return (2, 2, 1)


def parse_topology(name: str) -> Topology:
    """``v5p-128`` -> 64 v5p chips in a 4x4x4 torus (v4/v5p names count TensorCores, v5e/v6e chips)."""
    m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip().lower())
    gen = m and _ALIASES.get(m.group(1), m.group(1))
    if not m or gen not in TPUS:
        raise PlanError(f"--topology={name!r}: expected <generation>-<size> with generation in "
                        f"{', '.join(TPUS)} (e.g. v5p-128, v4-256, v5e-256, v6e-64)")
    spec, count = TPUS[gen], int(m.group(2))
    chips = count // spec.cores_per_chip
    smallest = 4 if spec.dims == 3 else 1
    if count % spec.cores_per_chip or chips < smallest or chips & (chips - 1):
        unit = "TensorCores (2 per chip)" if spec.cores_per_chip == 2 else "chips"
        raise PlanError(f"--topology={name!r}: {gen} slices come in powers of two of at least "
                        f"{smallest * spec.cores_per_chip} {unit}")
    # Grow the torus one doubling at a time, always along the last of the shortest axes:
    # 4 -> 2x2x1, 8 -> 2x2x2, 16 -> 2x2x4, 64 -> 4x4x4, 128 -> 4x4x8; 2D: 8 -> 2x4, 256 -> 16x16.
    shape = [2, 2, 1] if spec.dims == 3 else [1, 1]
    while math.prod(shape) < chips:
        i = max(j for j, s in enumerate(shape) if s == min(shape))
        shape[i] *= 2
    return Topology(f"{gen}-{count}", spec, chips, tuple(shape))


def _quiet_libtpu(topo: Topology) -> None:
    """libtpu looks for a TPU VM's metadata at start-up and logs errors when there is none."""
    for key, value in (("TPU_SKIP_MDS_QUERY", "1"), ("TPU_ACCELERATOR_TYPE", topo.name),
                       ("TPU_WORKER_HOSTNAMES", "localhost"), ("TPU_WORKER_ID", "0"),
                       ("TF_CPP_MIN_LOG_LEVEL", "3"), ("GRPC_VERBOSITY", "ERROR"),
                       # no TPU is opened: let several planners (and tests) load libtpu at once
                       ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):
        os.environ.setdefault(key, value)


def topology_devices(topo: Topology, num_slices: int = 1):
    _quiet_libtpu(topo)
    try:
        from jax.experimental import topologies
    except ImportError as e:  # pragma: no cover - jax always has it
        raise PlanError(f"jax.experimental.topologies unavailable: {e}") from None
    try:
        desc = topologies.get_topology_desc(
            platform="tpu", topology_name=topo.topology_name, chip_config_name=topo.spec.chip_config,
            chips_per_host_bounds=topo.chips_per_host_bounds, num_slices=num_slices)
    except Exception as e:  # libtpu missing or refusing the topology
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        import importlib.util

        hint = " (install libtpu: pip install -e '.[tpu]')" if importlib.util.find_spec("libtpu") is None else ""
        raise PlanError(f"cannot build TPU topology {topo.topology_name} x{num_slices}: {msg}{hint}") from None
    return list(desc.devices)


# ----------------------------------------------------------------------------- kernel FLOPs

_KERNEL = re.compile(r"splash_m[hq]a_(fwd|dkv|dq)")
_FLOAT_SHAPE = re.compile(r"(?:bf16|f16|f32)\[([0-9,]+)\]")


def splash_flops(hlo_text: str, block: int) -> tuple[float, dict[str, int]]:
    """Analytic FLOPs of the splash-attention kernel calls in compiled (per-device) HLO text.
    A causal call on q [b, n, t, h] visits nb(nb+1)/2 of the nb x nb tiles (block x block), each
    tile doing matmuls of 2*block^2*h FLOPs: the forward kernel 2 (QK^T, PV), the dkv kernel 4
    (QK^T, dO V^T, P^T dO, dS^T Q), the dq kernel 3 (QK^T, dO V^T, dS K); a fused backward (dkv
    without dq calls) 5. Remat recomputes show up as extra forward calls. Returns (FLOPs, calls
    per phase)."""
    calls: dict[str, list[tuple[int, ...]]] = {}
    for line in hlo_text.splitlines():
        if "tpu_custom_call" not in line or "operand_layout_constraints" not in line:
            continue
        m = _KERNEL.search(line.split("custom-call(")[0])
        if not m:
            continue
        constraints = line.split("operand_layout_constraints=", 1)[1]
        q = next((tuple(int(x) for x in sh.split(",")) for sh in _FLOAT_SHAPE.findall(constraints)
                  if sh.count(",") >= 2), None)  # q is the first floating operand of rank >= 3
        if q is not None:
            calls.setdefault(m.group(1), []).append(q)
    matmuls = {"fwd": 2, "dkv": 4 if "dq" in calls else 5, "dq": 3}
    total = 0.0
    for phase, shapes in calls.items():
        for *lead, t, h in shapes:
            bt = min(block, t)
            nb = max(1, t // bt)
            total += math.prod(lead) * nb * (nb + 1) / 2 * matmuls[phase] * 2 * bt * bt * h
    return total, {phase: len(shapes) for phase, shapes in calls.items()}


# ----------------------------------------------------------------------------- the plan


def _mem_field(mem, name: str) -> int:
    return int(getattr(mem, name, 0) or 0)


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return dict(cost or {})


def build_plan(cfg, topology: str, num_slices: int = 1, stage: str | None = None,
               hbm_fraction: float = 0.9) -> dict:
    """Compile the train step of ``cfg`` for ``topology`` and return the plan as a dict."""
    topo = parse_topology(topology)  # before the heavy imports: a typo fails fast
    if num_slices < 1:
        raise PlanError(f"--num_slices={num_slices}: must be >= 1")
    if not 0 < hbm_fraction <= 1:
        raise PlanError(f"--hbm_fraction={hbm_fraction}: must be in (0, 1]")
    import jax


    devices = topology_devices(topo, num_slices)
    try:
        mesh = sharding.make_mesh(**cfg.mesh, devices=devices)
    except ValueError as e:
        raise config_lib.ConfigError(f"{e} (topology {topo.name} x{num_slices} has {len(devices)} chips)") from None
    schema.resolve(cfg, len(devices))  # the config's fields and cross-field rules, as alignjax-train
    setup = train.Setup(cfg, mesh=mesh)
    stages = {st.name: st for st in setup.stages}
    st = stages.get(stage) if stage else setup.stages[0]
    if st is None:
        raise config_lib.ConfigError(f"--stage={stage!r}: this config runs {', '.join(stages)}")
    mc, accum = setup.model_cfg, cfg.train.grad_accum

    int_batch = jax.ShapeDtypeStruct((st.batch_size, st.seq_len), jax.numpy.int32,
                                     sharding=sharding.batch_sharding(mesh, 2))
    batch = {"inputs": int_batch, "targets": int_batch}
    if cfg.data.document_mask:
        batch.update(segment_ids=int_batch, positions=int_batch)

    t0 = time.perf_counter()
    try:
        with jax.set_mesh(mesh):
            compiled = setup.train_step.lower(setup.abstract_state, batch, setup.abstract_frozen).compile()
        error = None
    except Exception as e:  # XLA refuses programs that cannot fit in HBM
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text and "memory" not in text.lower():
            raise
        compiled, error = None, " ".join(text.split())[:600]
    compile_s = time.perf_counter() - t0

    n_dev = len(devices)
    capacity = topo.spec.hbm_gib * GiB
    plan = {
        "config": {"model": cfg.model.to_dict(), "mesh": dict(zip(mesh.axis_names, map(int, mesh.devices.shape))),
                   "stage": st.name, "batch_size": st.batch_size, "seq_len": st.seq_len, "grad_accum": accum},
        "topology": {"name": topo.name, "libtpu_topology": topo.topology_name, "num_slices": num_slices,
                     "chips": n_dev, "device_kind": devices[0].device_kind,
                     "peak_bf16_flops_per_chip": topo.spec.peak_flops, "hbm_gib_per_chip": topo.spec.hbm_gib},
        "tokens_per_step": st.batch_size * st.seq_len,
        "sequences_per_chip": st.batch_size / n_dev,
        "compile_seconds": round(compile_s, 1),
    }
    if compiled is None:
        # XLA's words: "Used 120.3G of 95.7G hbm" or "... temporaries (16.23G) exceeds available HBM (15.75G)"
        m = (re.search(r"Used ([\d.]+)([GMK])? of [\d.]+[GMK]? hbm", error or "")
             or re.search(r"\(([\d.]+)([GMK])\) exceeds available HBM", error or ""))
        unit = {"G": GiB, "M": 1024**2, "K": 1024, None: 1}
        used = float(m.group(1)) * unit[m.group(2)] if m else None
        plan["hbm"] = {"total_gib": used / GiB if used else None, "capacity_gib": topo.spec.hbm_gib,
                       "fraction": used / capacity if used else None, "limit_fraction": hbm_fraction,
                       "compiler_error": error}
        plan["fits"] = False
        plan["suggestions"] = suggestions(cfg, mesh, st, mc)
        return plan

    mem = compiled.memory_analysis()
    args, out = _mem_field(mem, "argument_size_in_bytes"), _mem_field(mem, "output_size_in_bytes")
    alias, temp = _mem_field(mem, "alias_size_in_bytes"), _mem_field(mem, "temp_size_in_bytes")
    code = _mem_field(mem, "generated_code_size_in_bytes")
    total = args + out - alias + temp + code
    plan["hbm"] = {"arguments_gib": args / GiB, "outputs_gib": out / GiB, "alias_gib": alias / GiB,
                   "temps_gib": temp / GiB, "code_gib": code / GiB, "total_gib": total / GiB,
                   "capacity_gib": topo.spec.hbm_gib, "fraction": total / capacity, "limit_fraction": hbm_fraction}
    fits = total <= hbm_fraction * capacity
    plan["fits"] = fits

    plan["compute"] = _compute(compiled, topo, st, mc, accum, n_dev)
    if mc.scan_layers:  # the cost analysis counts a scanned layer once: no speed figures, only HBM
        plan["compute"].update(est_step_seconds=None, est_tokens_per_sec_per_chip=None, est_mfu=None,
                               hardware_flops_ratio=None, not_estimated=(
                                   "model.scan_layers: XLA's cost analysis counts the scanned layer body once; "
                                   "plan with scan_layers=False for the step time and MFU"))
    if not fits:
        plan["suggestions"] = suggestions(cfg, mesh, st, mc)
    return plan


def _compute(compiled, topo: Topology, st, mc, accum: int, n_dev: int) -> dict:
    """The compiled step's FLOPs, bytes and time estimate (the roofline) and the MFU it implies."""
    cost = _cost(compiled)
    # A grad_accum > 1 step is a lax.scan over micro-batches, whose body the cost analysis counts
    # once: scale by the trip count (this also scales the optimizer update, a few ms: conservative).
    scale = accum
    xla_flops = float(cost.get("flops", 0.0)) * scale
    xla_bytes = float(cost.get("bytes accessed", 0.0)) * scale
    xla_seconds = float(cost.get("optimal_seconds", -1.0)) * scale
    roofline = xla_seconds > 0
    if not roofline:
        # libtpu models no per-op time for some generations (v4 reports a negative sentinel): fall
        # back to FLOPs at peak plus bytes at HBM bandwidth, no overlap. On v5p, where both exist,
        # XLA's optimal_seconds came out ~1.1x this sum for the 6.9B steps (README).
        xla_seconds = xla_flops / topo.spec.peak_flops + xla_bytes / (topo.spec.hbm_gbps * 1e9)
    kflops, kcalls = splash_flops(compiled.as_text(), attention.SPLASH_BLOCK)
    kflops *= scale
    kernel_seconds = kflops / topo.spec.peak_flops
    step_s = xla_seconds + kernel_seconds
    model_flops_chip = model_lib.flops_per_token(mc, st.seq_len) * st.batch_size * st.seq_len / n_dev
    tps_chip = st.batch_size * st.seq_len / n_dev / step_s if step_s > 0 else None
    return {
        "compiler_flops_per_chip": xla_flops,
        "kernel_flops_per_chip": kflops,
        "kernel_calls": kcalls,
        "grad_accum_scale": scale,
        "compiler_bytes_accessed_per_chip": xla_bytes,
        "compiler_optimal_seconds": xla_seconds,
        "compiler_time_model": "xla_optimal_seconds" if roofline else "flops_at_peak_plus_bytes_at_hbm_bandwidth",
        "kernel_seconds_at_peak": kernel_seconds,
        "est_step_seconds": step_s,
        "model_flops_per_token": model_lib.flops_per_token(mc, st.seq_len),
        "model_flops_per_chip": model_flops_chip,
        "hardware_flops_ratio": (xla_flops + kflops) / model_flops_chip if model_flops_chip else None,
        "est_tokens_per_sec_per_chip": tps_chip,
        "est_mfu": model_flops_chip / (step_s * topo.spec.peak_flops) if step_s > 0 else None,
        "mfu_formula": "6N + 6*L*T*d model FLOPs per token (PaLM appendix B; N = parameters less the input "
                       "embedding) / (est. step time x chips x peak bf16 FLOP/s)",
        "estimate": ("roofline: XLA cost-analysis optimal_seconds (each op at peak FLOP/s or HBM bandwidth; "
                     "collectives and overlap not modelled)" if roofline else
                     "roofline: compiler FLOPs at peak + compiler bytes at HBM bandwidth (this libtpu gives no "
                     "optimal_seconds for " + topo.spec.generation + "; collectives not modelled)") + (
                        "; splash-kernel FLOPs counted analytically from the compiled HLO, time at peak"
                        if kcalls else "") + ("; x grad_accum (scan body counted once)" if scale > 1 else ""),
    }


def suggestions(cfg, mesh, st, mc) -> list[str]:
    """Concrete overrides that lower per-chip HBM, most effective first."""
    out = []
    n = mesh.devices.size
    # What a remat policy keeps per token per layer, in bf16 vectors of d_model ("none" keeps
    # every intermediate; we count it as at least the MLP hidden states twice).
    saved = {"none": 16, "dots": 12, "save_attn": 9, "save_all": 8, "save_proj": 8, "save_qkv_ctx": 4,
             "save_qkv": 3, "save_ctx": 1, "full": 0}
    tokens = st.batch_size * st.seq_len / cfg.train.grad_accum / (mesh.shape["data"] * mesh.shape["fsdp"])
    cur = saved.get(mc.remat, 16)
    lighter = [(name, (cur - w) * mc.d_model * 2 * tokens * mc.num_layers / GiB)
               for name, w in sorted(saved.items(), key=lambda kv: -kv[1]) if w < cur]
    if cfg.train.loss_chunk == 0 and cfg.train.objective in ("lm", "sft"):
        # fp32 logits, and their gradient in the compute dtype
        logits = tokens * mc.vocab_size * (4 + (4 if mc.dtype == "float32" else 2)) / GiB
        chunk = config_lib.default_config().train.loss_chunk
        out.append(f"--config.train.loss_chunk={chunk} (the fused loss: no [tokens, vocab] logits, "
                   f"about {logits:.1f} GiB/chip)")
    for name, gib in [x for x in lighter if x[0] != "full"][:1] + [x for x in lighter if x[0] == "full"]:
        out.append(f"--config.model.remat={name} (about {gib:.1f} GiB/chip fewer saved activations)")
    if mc.attention != "splash" and st.seq_len >= 1024:
        out.append("--config.model.attention=splash (no T x T attention scores in HBM)")
    if mesh.shape["fsdp"] < n // mesh.shape["tensor"]:
        out.append(f"--config.mesh.fsdp={n // mesh.shape['tensor']} --config.mesh.data=1 "
                   "(shard params and optimizer state over every chip)")
    accum, shards = cfg.train.grad_accum, mesh.shape["data"] * mesh.shape["fsdp"]
    for a in (accum * 2, accum * 4):
        if st.batch_size % a == 0 and (st.batch_size // a) % shards == 0:
            out.append(f"--config.train.grad_accum={a} (micro-batch {st.batch_size // a} sequences, "
                       f"{st.batch_size // a / n:g} per chip)")
            break
    if mesh.shape["tensor"] == 1 and mc.num_heads % 2 == 0 and n % 2 == 0:
        out.append("--config.mesh.tensor=2 (split heads, MLP and vocab; per-chip batch stays larger)")
    return out


def format_plan(plan: dict) -> str:
    t, h, c = plan["topology"], plan["hbm"], plan["config"]
    lines = [f"plan: {c['stage']} stage of {c['model']['num_layers']}L d{c['model']['d_model']} "
             f"(remat={c['model']['remat']}, attention={c['model']['attention']}) on {t['name']} x{t['num_slices']} "
             f"({t['chips']} chips, {t['libtpu_topology']}, mesh {c['mesh']})",
             f"  batch {c['batch_size']} x {c['seq_len']} = {plan['tokens_per_step']:,} tokens/step, "
             f"{plan['sequences_per_chip']:g} seq/chip, grad_accum {c['grad_accum']}; compiled in {plan['compile_seconds']} s"]
    if "arguments_gib" in h:
        lines.append(f"  HBM/chip: args {h['arguments_gib']:.2f} + outputs {h['outputs_gib']:.2f} - alias "
                     f"{h['alias_gib']:.2f} + temps {h['temps_gib']:.2f} + code {h['code_gib']:.2f} = "
                     f"{h['total_gib']:.2f} GiB of "
                     f"{h['capacity_gib']:g} GiB ({100 * h['fraction']:.1f}%, limit {100 * h['limit_fraction']:.0f}%)")
    else:
        used = f"at least {h['total_gib']:.2f} GiB" if h.get("total_gib") else "more"
        lines.append(f"  HBM/chip: the compiler needs {used} of {h['capacity_gib']:g} GiB: {h['compiler_error'][:300]}")
    if plan.get("compute", {}).get("not_estimated"):
        lines.append(f"  est. step, tokens/s, MFU: not estimated ({plan['compute']['not_estimated']})")
    elif "compute" in plan:
        k = plan["compute"]
        lines.append(f"  FLOPs/chip: compiler {k['compiler_flops_per_chip']:.3e} + splash kernels "
                     f"{k['kernel_flops_per_chip']:.3e} (analytic) vs model {k['model_flops_per_chip']:.3e} "
                     f"(ratio {k['hardware_flops_ratio']:.2f})")
        lines.append(f"  est. step {k['est_step_seconds']:.3f} s (compiler {k['compiler_optimal_seconds']:.3f} + kernels "
                     f"{k['kernel_seconds_at_peak']:.3f}), {k['est_tokens_per_sec_per_chip']:,.0f} tokens/s/chip, "
                     f"MFU {100 * k['est_mfu']:.1f}%")
        lines.append(f"  ({k['estimate']}; MFU = {k['mfu_formula']})")
    lines.append("  FITS" if plan["fits"] else "  DOES NOT FIT; try:")
    lines += [f"    {s}" for s in plan.get("suggestions", [])]
    return "\n".join(lines)


def peak_table() -> str:
    rows = ["| TPU | bf16 peak FLOP/s per chip | HBM per chip | HBM bandwidth | name counts |", "|---|---|---|---|---|"]
    for s in TPUS.values():
        rows.append(f"| {s.generation} | {s.peak_flops / 1e12:g} T | {s.hbm_gib:g} GiB | {s.hbm_gbps:g} GB/s | "
                    f"{'TensorCores (2/chip)' if s.cores_per_chip == 2 else 'chips'} |")
    return "\n".join(rows)


def check_output_file(path: str) -> None:
    """--output must be a file this process can write: checked before the compile, not after it."""
    p = os.path.abspath(path)
    parent = os.path.dirname(p)
    if os.path.isdir(p):
        raise ConfigError(f"--output={path} is a directory, not a file")
    if not os.path.isdir(parent):
        raise ConfigError(f"--output={path}: {parent} " + ("is a file, not a directory" if os.path.exists(parent)
                                                          else "does not exist"))
    if not os.access(parent, os.W_OK | os.X_OK) or (os.path.exists(p) and not os.access(p, os.W_OK)):
        raise ConfigError(f"--output={path} is not writable")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, flags = config_lib.parse_args(argv, {"topology": None, "num_slices": "1", "stage": None,
                                                  "output": None, "hbm_fraction": "0.9"},
                                           usage=__doc__ + "\n" + peak_table())
        if flags["workdir"]:
            raise config_lib.ConfigError("--workdir: alignjax-plan writes no run directory (use --output=plan.json)")
        if not flags["topology"]:
            raise config_lib.ConfigError("--topology is required (e.g. v5p-128, v4-256, v5e-256, v6e-64)")
        if flags["output"]:
            check_output_file(flags["output"])
        try:
            num_slices, frac = int(flags["num_slices"]), float(flags["hbm_fraction"])
        except ValueError:
            raise config_lib.ConfigError("--num_slices must be an integer and --hbm_fraction a number") from None
        plan = build_plan(cfg, flags["topology"], num_slices, flags["stage"], frac)
    except (config_lib.ConfigError, PlanError) as e:
        config_lib.cli_error("alignjax-plan", str(e).splitlines()[0] if str(e) else type(e).__name__)
    if flags["output"]:
        with open(flags["output"], "w") as f:
            json.dump(plan, f, indent=2, default=str)
            f.write("\n")
    print(format_plan(plan), flush=True)
    return 0 if plan["fits"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
