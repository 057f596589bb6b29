"""What a GPT-NeoX model is: its config (shape, numerics, how the step runs) and Pythia's
presets, without jax, so that configs, run directories and the data commands read them cheaply;
``alignjax.model`` is the model itself."""

from __future__ import annotations

import dataclasses

# Pythia's published shapes (EleutherAI/pythia-* config.json). Vocab is padded for efficient
# sharding: 50304 for most sizes, 50432 at 6.9B, 50688 at 12B.
PRESETS: dict[str, dict] = {
    "14m": dict(num_layers=6, d_model=128, num_heads=4, d_ff=512, vocab_size=50304),
    "31m": dict(num_layers=6, d_model=256, num_heads=8, d_ff=1024, vocab_size=50304),
    "70m": dict(num_layers=6, d_model=512, num_heads=8, d_ff=2048, vocab_size=50304),
    "160m": dict(num_layers=12, d_model=768, num_heads=12, d_ff=3072, vocab_size=50304),
    "410m": dict(num_layers=24, d_model=1024, num_heads=16, d_ff=4096, vocab_size=50304),
    "1b": dict(num_layers=16, d_model=2048, num_heads=8, d_ff=8192, vocab_size=50304),
    "1.4b": dict(num_layers=24, d_model=2048, num_heads=16, d_ff=8192, vocab_size=50304),
    "2.8b": dict(num_layers=32, d_model=2560, num_heads=32, d_ff=10240, vocab_size=50304),
    "6.9b": dict(num_layers=32, d_model=4096, num_heads=32, d_ff=16384, vocab_size=50432),
    # The study's released models (geodesic-research/sfm-*; Tice et al. 2026): Pythia-6.9B's
    # shape with the GPT-NeoX vocabulary padded to 50,304 rather than 50,432.
    "sfm-6.9b": dict(num_layers=32, d_model=4096, num_heads=32, d_ff=16384, vocab_size=50304),
    "12b": dict(num_layers=36, d_model=5120, num_heads=40, d_ff=20480, vocab_size=50688),
}

# model.remat: the policies of alignjax.model.REMAT_POLICIES (which names a rematerialised block saves).
REMAT_NAMES = ("full", "dots", "save_proj", "save_attn", "save_qkv", "save_qkv_ctx", "save_ctx", "save_all")
# model.attention: xla | cudnn: jax.nn.dot_product_attention's implementation; splash: the
# Pallas splash attention kernel on TPU (causal blocks skipped, no T x T scores in HBM), the
# XLA path elsewhere. On CPU, xla and splash run blockwise_causal_attention (the same math).
ATTENTION = ("xla", "cudnn", "splash")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 50304
    num_layers: int = 6
    d_model: int = 128
    num_heads: int = 4
    d_ff: int = 512
    max_seq_len: int = 2048
    rotary_pct: float = 0.25
    rotary_base: float = 10000.0
    ln_eps: float = 1e-5
    gelu_approximate: bool = False
    init_std: float = 0.02
    dtype: str = "float32"
    # How the step runs, not what the model is: left out of equality, so params trained with one
    # remat policy / attention kernel load into a config with another (midtraining's, say).
    remat: str = dataclasses.field(default="none", compare=False)  # none | a REMAT_NAMES name (model.REMAT_POLICIES)
    attention: str = dataclasses.field(default="xla", compare=False)  # an ATTENTION name (above)
    # One traced block body scanned over the layers (a compile L times smaller) instead of L
    # unrolled copies; the params stay one entry per layer.
    scan_layers: bool = dataclasses.field(default=False, compare=False)

    SHAPE = ("num_layers", "d_model", "num_heads", "d_ff", "rotary_pct", "rotary_base", "ln_eps",
             "gelu_approximate", "vocab_size")

    def identity(self) -> dict:
        """What makes two models the same: the fields that fix the params' shapes and the function
        they compute. Resume, ``checkpoint.init_from``, eval and post-training compare these;
        post-training lets ``vocab_size`` grow (new chat-token rows)."""
        return {f: getattr(self, f) for f in self.SHAPE}

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)

    def __post_init__(self):
        if self.d_model % self.num_heads:
            raise ValueError(f"model.d_model={self.d_model} is not divisible by model.num_heads={self.num_heads}")
        if self.remat != "none" and self.remat not in REMAT_NAMES:
            raise ValueError(f"model.remat={self.remat!r}; valid: none, {', '.join(REMAT_NAMES)}")
        if self.attention not in ATTENTION:
            raise ValueError(f"model.attention={self.attention!r}; valid: {', '.join(ATTENTION)}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"model.dtype={self.dtype!r}; valid: float32, bfloat16, float16")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown Pythia preset {name!r}; valid: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})
