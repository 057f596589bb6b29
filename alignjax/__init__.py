"""alignjax: alignment-pretraining research on GPT-NeoX in JAX."""

import glob as _glob
import importlib.util as _util
import os as _os

# The `tpu` extra installs libtpu everywhere (the planner compiles for TPU from CPU hosts). On a
# host with no TPU chips, letting JAX probe it prints a screen of libtpu start-up errors before
# every command, so pick the platforms here unless the user already did.
if "JAX_PLATFORMS" not in _os.environ and not (_glob.glob("/dev/accel*") or _glob.glob("/dev/vfio/*")):
    _cuda = any(_util.find_spec(m) for m in ("jax_cuda12_plugin", "jax_cuda13_plugin"))
    _os.environ["JAX_PLATFORMS"] = "cuda,cpu" if _cuda else "cpu"
