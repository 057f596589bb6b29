"""rundir.py's writer side: the run lock and lease, experiment identity, metrics truncation."""

import json
import time

import pytest

from alignjax import metrics as metrics_lib
from alignjax import rundir
from alignjax.config import ConfigError, default_config
from alignjax.model import ModelConfig
from test_storage import fake_gcs  # noqa: F401  (a fixture)


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_local_lock_refuses_a_second_writer_and_dies_with_its_holder(tmp_path):
    run = rundir.RunDir(tmp_path)
    first = run.lock()
    first.acquire()
    holder = json.loads((tmp_path / rundir.LOCK).read_text())
    assert set(holder) == {"host", "pid", "start"}
    with pytest.raises(rundir.LockError) as e:
        run.lock().acquire()  # flock: a second open file conflicts, in this process too
    msg = str(e.value)
    assert "\n" not in msg and f"pid {holder['pid']}" in msg and f"host {holder['host']}" in msg
    assert holder["start"] in msg
    first.release()
    with run.lock():  # released: the next writer takes it (the stale file names nobody alive)
        pass


def test_lease_expires_and_a_taken_lease_is_lost(tmp_path):
    clock = Clock()
    run = rundir.RunDir(tmp_path)
    a = rundir.RunLock(run, lease=True, ttl_s=120, clock=clock, heartbeat=False)
    a.acquire()
    lease = json.loads((tmp_path / rundir.LEASE).read_text())
    assert {"host", "pid", "start", "expires"} <= set(lease) and lease["expires"] == clock.t + 120
    b = rundir.RunLock(run, lease=True, ttl_s=120, clock=clock, heartbeat=False)
    clock.t += 60
    with pytest.raises(rundir.LockError, match=r"in use by another writer \(host .*, pid \d+, started .*, lease until"):
        b.acquire()
    assert a.renew() and json.loads((tmp_path / rundir.LEASE).read_text())["expires"] == clock.t + 120
    clock.t += 119
    with pytest.raises(rundir.LockError):
        b.acquire()  # renewed at t+60: still held at t+179
    clock.t += 2  # a preempted holder stopped renewing: its lease lapsed
    b.acquire()
    assert not a.renew() and a.lost  # the old holder learns it lost the run
    a.release()
    assert (tmp_path / rundir.LEASE).exists()  # a's release leaves b's lease alone
    b.release()
    assert not (tmp_path / rundir.LEASE).exists()


def test_lease_heartbeat_renews_in_the_background(tmp_path):
    run = rundir.RunDir(tmp_path)
    lock = rundir.RunLock(run, lease=True, ttl_s=5, renew_s=0.05)
    lock.acquire()
    first = json.loads((tmp_path / rundir.LEASE).read_text())["expires"]
    deadline = time.time() + 10
    while json.loads((tmp_path / rundir.LEASE).read_text())["expires"] == first and time.time() < deadline:
        time.sleep(0.02)
    assert json.loads((tmp_path / rundir.LEASE).read_text())["expires"] > first
    lock.release()
    assert not (tmp_path / rundir.LEASE).exists()


def test_identity_fields_and_run_settings():
    for field in ("model.d_model", "model.dtype", "optimizer.lr", "train.num_steps", "train.seed", "data.condition",
                  "data.sources.dclm.path", "stages.cpt.lr", "chat.template", "dpo.beta", "lora.rank",
                  "checkpoint.init_from", "something.new"):
        assert rundir.is_identity(field), field
    for field in ("model.remat", "model.attention", "train.log_every", "train.grad_accum", "train.allow_changes",
                  "checkpoint.every_steps", "checkpoint.max_to_keep", "mesh.data", "eval.tasks",
                  "data.max_bad_fraction"):
        assert not rundir.is_identity(field), field
    # the model part of a run's identity is ModelConfig.identity() (and the run's dtype), nothing else
    model_fields = default_config().to_dict()["model"]
    assert {f for f in model_fields if rundir.is_identity(f"model.{f}")} == {*ModelConfig().identity(), "dtype"}


def test_identity_diff_allows_settings_and_listed_changes_only():
    old = default_config().to_dict()
    new = default_config()
    new.model.remat = "full"
    new.optimizer.lr = 0.01
    new.optimizer.b2 = 0.99
    new.checkpoint.every_steps = 50
    changed, refused = rundir.identity_changes(old, new.to_dict())
    assert changed == {"checkpoint.every_steps": (1000, 50), "model.remat": ("none", "full"),
                       "optimizer.b2": (0.95, 0.99), "optimizer.lr": (0.001, 0.01)}
    assert list(refused) == ["optimizer.b2", "optimizer.lr"]
    assert list(rundir.identity_changes(old, new.to_dict(), ("optimizer.lr",))[1]) == ["optimizer.b2"]
    assert rundir.identity_changes(old, new.to_dict(), ("optimizer",))[1] == {}  # a group prefix
    assert rundir.identity_changes(old, new.to_dict(), ("optimizer.l",))[1]  # a prefix is a whole name


def test_a_field_added_since_the_run_started_is_not_a_change():
    defaults = default_config().to_dict()
    old = json.loads(json.dumps(defaults))
    del old["data"]["document_mask"]  # a run started before this field existed
    assert rundir.identity_changes(old, defaults, defaults=defaults)[1] == {}
    new = default_config()
    new.data.document_mask = True  # ... but not at its default: a change
    assert list(rundir.identity_changes(old, new.to_dict(), defaults=defaults)[1]) == ["data.document_mask"]
    with_source = json.loads(json.dumps(defaults))
    with_source["data"]["sources"] = {"dclm": {"path": "x", "share": 1.0, "blocklist": "", "text_field": ""}}
    refused = rundir.identity_changes(defaults, with_source, defaults=defaults)[1]
    assert "data.sources.dclm.path" in refused  # a new source has no default


def test_allow_changes_names_must_exist():
    cfg = default_config().to_dict()
    assert rundir.parse_allow(" optimizer.lr, train ", cfg) == ("optimizer.lr", "train")
    with pytest.raises(ConfigError, match="train.allow_changes: 'optimzer' is not a config field or group"):
        rundir.parse_allow("optimzer", cfg)


def test_record_start_writes_config_once_and_a_row_per_start(tmp_path):
    run = rundir.RunDir(tmp_path)
    first = default_config().to_dict()
    row = run.record_start(first)
    assert row["changed"] == {} and json.loads(run.config.read_text()) == json.loads(json.dumps(first))
    before = run.config.read_bytes()
    second = default_config()
    second.optimizer.lr = 0.5
    row = run.record_start(second.to_dict(), ("optimizer.lr",))
    assert run.config.read_bytes() == before  # config.json is the first start's
    rows = [json.loads(x) for x in run.runs.read_text().splitlines()]
    assert len(rows) == 2 and rows[1]["changed"] == {"optimizer.lr": [0.001, 0.5]}
    assert rows[1]["allowed"] == ["optimizer.lr"] and {"start", "host", "pid", "config"} <= set(rows[1])
    assert run.previous_config()["optimizer"]["lr"] == 0.5  # the next start compares with the latest
    with open(run.runs, "a") as f:
        f.write('{"torn": ')  # a crash mid-append
    assert run.previous_config()["optimizer"]["lr"] == 0.5


def test_metrics_rows_after_the_restored_step_are_cut_and_kept_aside(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 16))
    path.write_text(rows + '{"step": 16, "lo')  # killed mid-row
    assert metrics_lib.truncate_after(path, 15).name == "metrics.jsonl.1"  # the torn row alone goes
    backup = metrics_lib.truncate_after(path, 10)
    assert backup.name == "metrics.jsonl.2" and backup.read_text() == rows
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == list(range(1, 11))
    assert metrics_lib.truncate_after(path, 10) is None  # nothing after step 10: nothing to do
    w = metrics_lib.MetricsWriter(tmp_path, resume_step=5)
    w.write(6, {"loss": 0.5})
    w.close()
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    assert w.cut.name == "metrics.jsonl.3"


def test_tensorboard_shows_one_value_per_step_after_a_resume(tmp_path):
    """The events logged after the restored step (before a crash) are hidden by the resumed run's
    purge step, as TensorBoard itself reads the directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w = metrics_lib.MetricsWriter(tmp_path)
    for step in range(1, 9):  # logged up to step 8, saved at 5, then killed
        w.write(step, {"loss": 1.0})
    w.close()
    w = metrics_lib.MetricsWriter(tmp_path, resume_step=5)
    for step in range(6, 11):
        w.write(step, {"loss": 0.5})
    w.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert events == [(s, 1.0) for s in range(1, 6)] + [(s, 0.5) for s in range(6, 11)], events


def test_preflight_names_the_path_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"file is a file, not a directory"):
        rundir.RunDir(tmp_path / "file").preflight_writable()
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "checkpoints").write_text("x")
    with pytest.raises(ConfigError, match=r"w/checkpoints is a file, not a directory"):
        rundir.RunDir(tmp_path / "w").preflight_writable()
    run = rundir.RunDir(tmp_path / "ok")
    run.preflight_writable()
    # the workdir stays (the lock lives there); probed subdirectories do not, so a later check's
    # failure leaves nothing a resume would read
    assert run.root.is_dir() and not run.checkpoints.exists() and not run.tensorboard.exists()
    run.checkpoints.mkdir()
    run.preflight_writable()
    assert run.checkpoints.is_dir() and not list(run.checkpoints.iterdir())


def test_preflight_of_processes_starting_together_does_not_trip_over_each_other(tmp_path, monkeypatch):
    """Pod hosts (and the processes of one host) probe the same new checkpoints/ at once: one
    removing its probe directory while another writes there, or another's probe still in it
    when this one tidies up, is not an unwritable path (a 2-process test hit the first)."""
    run = rundir.RunDir(tmp_path / "run")
    cls, real_write, real_rmdir = type(run.checkpoints), type(run.checkpoints).write_text, type(run.checkpoints).rmdir
    raced = []

    def write_text(self, *args, **kwargs):
        if self.parent == run.checkpoints and not raced:  # the other process's rmdir lands first
            raced.append(self)
            real_rmdir(self.parent)
        return real_write(self, *args, **kwargs)

    def rmdir(self):
        if self == run.tensorboard:  # the other process's probe is in it right now
            raise OSError(39, "Directory not empty")
        return real_rmdir(self)

    monkeypatch.setattr(cls, "write_text", write_text)
    monkeypatch.setattr(cls, "rmdir", rmdir)
    run.preflight_writable()
    assert raced and not run.checkpoints.exists() and run.tensorboard.is_dir()


def test_on_gs_the_lock_is_a_lease_and_metrics_and_runs_are_rewritten_whole(fake_gcs):
    from etils import epath

    run = rundir.RunDir("gs://bucket/run")
    clock = Clock()
    lock = run.lock(clock=clock, heartbeat=False)
    lock.acquire()
    assert lock.lease and (run.root / rundir.LEASE).exists()
    with pytest.raises(rundir.LockError):
        run.lock(clock=clock, heartbeat=False).acquire()
    lock.release()
    run.record_start(default_config().to_dict())
    run.record_start(default_config().to_dict())
    assert len(run.runs.read_text().splitlines()) == 2  # no appends on GCS: read and rewritten
    rows = "".join(json.dumps({"step": s}) + "\n" for s in range(1, 9))
    run.metrics.write_text(rows)
    w = metrics_lib.MetricsWriter("gs://bucket/run", sync_every_s=0, resume_step=5)
    assert w.cut == epath.Path("gs://bucket/run/metrics.jsonl.1") and w.cut.read_text() == rows
    w.write(6, {"loss": 1.0})
    w.close()
    assert [json.loads(x)["step"] for x in run.metrics.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
