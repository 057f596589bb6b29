"""Multi-host start-up: ``jax.distributed.initialize`` where there is more than one process.

Called first in every command's main, before anything touches a JAX backend. Three cases:
- ``ALIGNJAX_COORDINATOR`` (or JAX's own ``JAX_COORDINATOR_ADDRESS``) is set: an explicit
  cluster (tests, a hand-made multi-machine run) with ``ALIGNJAX_NUM_PROCESSES`` /
  ``ALIGNJAX_PROCESS_ID`` (or ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``);
- a Cloud TPU VM that is one worker of several (a pod slice, or multislice through the
  MEGASCALE_* variables): JAX's own cluster detection reads the TPU metadata;
- otherwise (one host, one CPU/GPU/TPU machine): nothing.
"""

from __future__ import annotations

import glob
import logging
import os
import urllib.request

from alignjax.config import ConfigError

log = logging.getLogger("alignjax")

_METADATA = "http://{}/computeMetadata/v1/instance/attributes/{}"


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _on_tpu_vm() -> bool:
    # What jax's hardware_utils looks for, without initialising a backend.
    return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))


def tpu_worker_count() -> int:
    """Hosts of this TPU slice (x slices) from the environment or the VM's metadata; 1 if unknown."""
    slices = int(_env("MEGASCALE_NUM_SLICES") or 1)
    hosts = _env("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES")
    if hosts is None:
        ip = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
        req = urllib.request.Request(_METADATA.format(ip, "worker-network-endpoints"),
                                     headers={"Metadata-Flavor": "Google"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                hosts = r.read().decode()
        except OSError:
            hosts = ""
    return max(1, len([h for h in hosts.split(",") if h])) * slices


def initialize() -> bool:
    """Join the multi-process cluster if there is one; True when jax.distributed was started."""
    import jax

    coordinator = _env("ALIGNJAX_COORDINATOR", "JAX_COORDINATOR_ADDRESS")
    if coordinator:
        num, pid = _env("ALIGNJAX_NUM_PROCESSES", "JAX_NUM_PROCESSES"), _env("ALIGNJAX_PROCESS_ID", "JAX_PROCESS_ID")
        if num is None or pid is None:
            raise ConfigError(f"coordinator {coordinator} is set but ALIGNJAX_NUM_PROCESSES and ALIGNJAX_PROCESS_ID "
                              "(or JAX_NUM_PROCESSES and JAX_PROCESS_ID) are not")
        try:
            num_processes, process_id = int(num), int(pid)
        except ValueError:
            raise ConfigError(f"ALIGNJAX_NUM_PROCESSES={num!r} and ALIGNJAX_PROCESS_ID={pid!r} must be integers") from None
        if not 0 <= process_id < num_processes:
            raise ConfigError(f"ALIGNJAX_PROCESS_ID={process_id} is not in [0, ALIGNJAX_NUM_PROCESSES={num_processes})")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    elif _on_tpu_vm() and tpu_worker_count() > 1:
        jax.distributed.initialize()  # coordinator, process count and id from the TPU metadata
    else:
        return False
    log.info("process %d of %d (%d local / %d global devices)", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())
    return True
