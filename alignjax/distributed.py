"""Multi-host start-up: ``jax.distributed.initialize`` where there is more than one process.

Called first in every command's main, before anything touches a JAX backend. Three cases:
- ``ALIGNJAX_COORDINATOR`` (or JAX's own ``JAX_COORDINATOR_ADDRESS``) is set: an explicit
  cluster (tests, a hand-made multi-machine run) with ``ALIGNJAX_NUM_PROCESSES`` /
  ``ALIGNJAX_PROCESS_ID`` (or ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``);
- a Cloud TPU VM whose topology (:func:`tpu_topology`) has more than one process: a pod slice,
  or multislice, including slices of one host each (v5e-8 x N);
- otherwise (one host, one CPU/GPU/TPU machine): nothing.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import time
import urllib.error
import urllib.request

from alignjax.config import ConfigError

log = logging.getLogger("alignjax")

# jax's GceTpuCluster: the metadata server (GCE_METADATA_IP overrides it, host[:port]; the
# tests point it at a local server) and the coordinator port it uses on Cloud TPU.
_METADATA = "http://{}/computeMetadata/v1/instance/attributes/{}"
COORDINATOR_PORT = 8482


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _on_tpu_vm() -> bool:
    # What jax's hardware_utils looks for, without initialising a backend.
    return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))


def metadata(key: str, retries: int = 3) -> str | None:
    """One attribute of this VM's metadata; None if the server says it does not exist."""
    url = _METADATA.format(os.environ.get("GCE_METADATA_IP", "metadata.google.internal"), key)
    for attempt in range(retries):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Metadata-Flavor": "Google"}),
                                        timeout=10) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            err = e
        except OSError as e:
            err = e
        time.sleep(0.5 * (attempt + 1))
    # A TPU VM whose metadata cannot be read would otherwise train alone on each host.
    raise ConfigError(f"TPU metadata {url}: {err}")


def _tpu_env() -> dict[str, str]:
    """The ``tpu-env`` attribute (lines ``KEY: 'value'``), where the TPU runtime puts MEGASCALE_*
    for queued-resource multislice; parsed as jax's get_tpu_env_value_from_metadata does."""
    out = {}
    for line in (metadata("tpu-env") or "").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip().strip("'")
    return out


@dataclasses.dataclass(frozen=True)
class Topology:
    num_slices: int
    slice_id: int
    worker_id: int  # within the slice
    workers: tuple[str, ...]  # this slice's hosts, in worker order
    coordinator: str  # host:port of process 0

    @property
    def num_processes(self) -> int:
        return len(self.workers) * self.num_slices

    @property
    def process_id(self) -> int:
        return self.slice_id * len(self.workers) + self.worker_id


def tpu_topology() -> Topology:
    """Slices, this host's slice and worker, and the coordinator, each from the environment
    first and the VM's metadata otherwise: the sources (and order) of jax's Cloud TPU cluster
    detection (jax/_src/clusters/cloud_tpu_cluster.py)."""
    tpu_env: dict[str, str] | None = None

    def value(key: str) -> str | None:
        nonlocal tpu_env
        if os.environ.get(key):
            return os.environ[key]
        if tpu_env is None:
            tpu_env = _tpu_env()
        return tpu_env.get(key) or None

    hosts = _env("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")  # GKE sets these
    if hosts is None:  # GCE: name:id:ip triples (old format) or plain hostnames
        hosts = ",".join(h.split(":")[-1] for h in (metadata("worker-network-endpoints") or "").split(",") if h)
    workers = tuple(h for h in hosts.split(",") if h) or ("localhost",)
    worker = _env("TPU_WORKER_ID") or metadata("agent-worker-number") or value("WORKER_ID") or "0"
    coordinator = (value("MEGASCALE_COORDINATOR_ADDRESS") or workers[0]).split(":")[0]
    try:
        return Topology(int(value("MEGASCALE_NUM_SLICES") or 1), int(value("MEGASCALE_SLICE_ID") or 0),
                        int(worker), workers, f"{coordinator}:{COORDINATOR_PORT}")
    except ValueError as e:
        raise ConfigError(f"TPU topology: {e}") from None


def tpu_worker_count() -> int:
    """Hosts of this TPU slice x slices; 1 off a TPU VM."""
    return tpu_topology().num_processes if _on_tpu_vm() else 1


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
    elif _on_tpu_vm() and (topo := tpu_topology()).num_processes > 1:
        coordinator, num_processes, process_id = topo.coordinator, topo.num_processes, topo.process_id
        log.info("TPU topology: %d slice(s) x %d host(s); slice %d, worker %d", topo.num_slices, len(topo.workers),
                 topo.slice_id, topo.worker_id)
    else:
        return False
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"ALIGNJAX_PROCESS_ID={process_id} is not in [0, ALIGNJAX_NUM_PROCESSES={num_processes})")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    log.info("process %d of %d (%d local / %d global devices)", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())
    return True
