"""Pythia sizes: ``--config=configs/pythia.py:<size>`` with size in 14m ... 12b (default 14m)."""

from alignjax.config import default_config
from alignjax.model import PRESETS

# Peak learning rates of the Pythia suite (Biderman et al. 2023, table 6).
LR = {"14m": 1e-3, "31m": 1e-3, "70m": 1e-3, "160m": 6e-4, "410m": 3e-4, "1b": 3e-4,
      "1.4b": 2e-4, "2.8b": 1.6e-4, "6.9b": 1.2e-4, "12b": 1.2e-4}


def get_config(size=None):
    size = size or "14m"
    if size not in LR:  # PRESETS also holds sfm-6.9b, the study's shape: configs/paper.py trains it
        raise ValueError(f"unknown Pythia size {size!r}; valid: {', '.join(LR)} (the study's sfm-6.9b: configs/paper.py)")
    c = default_config()
    c.model.update(PRESETS[size])
    c.optimizer.lr = LR[size]
    return c
