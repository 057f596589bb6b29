#!/usr/bin/env python3
"""``python launch/tpu.py ...`` = ``alignjax-launch ...`` (alignjax/launch.py), for a checkout
where the package's console scripts are not installed. See launch/README.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignjax.launch import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
