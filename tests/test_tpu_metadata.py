"""TPU topology from the VM's metadata: a fake metadata server on 127.0.0.1 serves what a
Cloud TPU VM's does (tpu-env, worker-network-endpoints, agent-worker-number), and the
arguments alignjax passes to jax.distributed.initialize are checked against jax's own
Cloud TPU cluster detection reading the same server."""

import http.server
import threading

import jax
import pytest
from jax._src.clusters import cloud_tpu_cluster

from alignjax import distributed
from alignjax.config import ConfigError

TPU_ENV_VARS = ("MEGASCALE_NUM_SLICES", "MEGASCALE_SLICE_ID", "MEGASCALE_COORDINATOR_ADDRESS", "TPU_WORKER_ID",
                "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "WORKER_ID", "ALIGNJAX_COORDINATOR",
                "JAX_COORDINATOR_ADDRESS")


@pytest.fixture
def metadata_server(monkeypatch):
    """Serves ``attrs`` (a dict the test fills) under /computeMetadata/v1/instance/attributes/,
    only to requests with the Metadata-Flavor: Google header, as GCE does."""
    attrs, requests_seen = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            prefix = "/computeMetadata/v1/instance/attributes/"
            key = self.path[len(prefix):] if self.path.startswith(prefix) else None
            requests_seen.append(key)
            if self.headers.get("Metadata-Flavor") != "Google":
                self.send_response(403)
                self.end_headers()
                return
            body = attrs.get(key)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write((body or "").encode())

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in TPU_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(distributed, "_on_tpu_vm", lambda: True)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    for name in ("process_index", "process_count", "local_device_count", "device_count"):
        monkeypatch.setattr(jax, name, lambda: 0)  # only the log line after initialize reads these
    yield attrs, calls, requests_seen
    server.shutdown()
    server.server_close()


def _jax_detects():
    """What jax.distributed.initialize() with no arguments would derive on this VM."""
    c = cloud_tpu_cluster.GceTpuCluster
    return {"coordinator_address": c.get_coordinator_address(timeout_secs=5, override_coordinator_port=None),
            "num_processes": c.get_process_count(), "process_id": c.get_process_id()}


def _tpu_env(**kv) -> str:
    return "".join(f"{k}: '{v}'\n" for k, v in {"ACCELERATOR_TYPE": "v5litepod-8", **kv}.items())


def test_single_host_multislice_initializes_from_tpu_env_metadata(metadata_server):
    """2 x v5e-8 (one host per slice): MEGASCALE_* only in the tpu-env metadata, not the process
    environment. Before, alignjax saw 1 worker and each slice trained alone."""
    attrs, calls, _ = metadata_server
    attrs.update({"tpu-env": _tpu_env(MEGASCALE_NUM_SLICES=2, MEGASCALE_SLICE_ID=1,
                                      MEGASCALE_COORDINATOR_ADDRESS="10.1.0.7:8080", WORKER_ID=0),
                  "worker-network-endpoints": "w-0:uid0:10.1.0.9", "agent-worker-number": "0"})
    topo = distributed.tpu_topology()
    assert (topo.num_slices, topo.slice_id, topo.worker_id, topo.workers) == (2, 1, 0, ("10.1.0.9",))
    assert distributed.tpu_worker_count() == 2
    assert distributed.initialize() is True
    assert calls == [{"coordinator_address": "10.1.0.7:8482", "num_processes": 2, "process_id": 1}]
    assert calls[0] == _jax_detects()


def test_pod_slice_workers_from_network_endpoints(metadata_server):
    attrs, calls, _ = metadata_server
    attrs.update({"tpu-env": _tpu_env(WORKER_ID=3),
                  "worker-network-endpoints": ",".join(f"w-{i}:uid{i}:10.0.0.{i + 2}" for i in range(4)),
                  "agent-worker-number": "3"})
    assert distributed.initialize() is True
    assert calls == [{"coordinator_address": "10.0.0.2:8482", "num_processes": 4, "process_id": 3}]
    assert calls[0] == _jax_detects()


def test_multislice_of_pod_slices_numbers_processes_slice_major(metadata_server):
    attrs, calls, _ = metadata_server
    attrs.update({"tpu-env": _tpu_env(MEGASCALE_NUM_SLICES=3, MEGASCALE_SLICE_ID=2,
                                      MEGASCALE_COORDINATOR_ADDRESS="10.9.0.2"),
                  "worker-network-endpoints": "10.3.0.2,10.3.0.3", "agent-worker-number": "1"})  # new format
    assert distributed.initialize() is True
    assert calls == [{"coordinator_address": "10.9.0.2:8482", "num_processes": 6, "process_id": 5}]
    assert calls[0] == _jax_detects()


def test_environment_overrides_metadata(metadata_server, monkeypatch):
    attrs, calls, _ = metadata_server
    attrs.update({"tpu-env": _tpu_env(MEGASCALE_NUM_SLICES=2, MEGASCALE_SLICE_ID=0),
                  "worker-network-endpoints": "10.0.0.2", "agent-worker-number": "0"})
    monkeypatch.setenv("MEGASCALE_NUM_SLICES", "4")
    monkeypatch.setenv("MEGASCALE_SLICE_ID", "3")
    assert distributed.initialize() is True
    assert calls == [{"coordinator_address": "10.0.0.2:8482", "num_processes": 4, "process_id": 3}]


def test_single_host_single_slice_does_not_initialize(metadata_server):
    attrs, calls, seen = metadata_server
    attrs.update({"tpu-env": _tpu_env(WORKER_ID=0), "worker-network-endpoints": "w-0:uid0:10.0.0.2",
                  "agent-worker-number": "0"})
    assert distributed.initialize() is False and calls == []
    assert "tpu-env" in seen  # the slice count was looked up, not assumed


def test_unreadable_metadata_is_an_error_not_a_lone_host(metadata_server, monkeypatch):
    monkeypatch.setattr(distributed.time, "sleep", lambda s: None)
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:1")  # nothing listens there
    with pytest.raises(ConfigError, match="TPU metadata http://127.0.0.1:1/"):
        distributed.initialize()
