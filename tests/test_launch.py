"""alignjax-launch: the gcloud commands for a single-host v4-8, a multi-host v5p-128 and a
multislice run, input errors, the worker scripts run by bash, and the requeue state machine
against a scripted gcloud that fails in each way (capacity, FAILED, SUSPENDED, a repaired slice
without code, permanent errors), with its restart count kept in <workdir>/launch.jsonl."""

import json
import shlex
import subprocess
import sys

import pytest
from etils.epath import backend, gpath
from fsspec.implementations.memory import MemoryFileSystem

from alignjax import launch
from conftest import REPO

# The launcher's code hash, pinned: other tests write files while the suite runs, so the repo's
# real hash can change between import and use (test_tree_hash covers the function itself).
CODE = "c0dec0dec0dec0de"
TREE_HASH = launch.tree_hash
SETUP_HASH = launch.Launcher(launch._parser().parse_args(["setup", "--name=x", "--zone=z", "--accelerator=v4-8"]),
                             []).setup_hash()
SETUP = ("python3 -m pip install -q --user uv && ~/.local/bin/uv venv -q --allow-existing --python 3.11 "
         "~/alignjax-venv && ~/.local/bin/uv pip install -q --python ~/alignjax-venv/bin/python -e "
         "\"$HOME/alignjax[tpu,hub]\" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html && "
         f"echo {SETUP_HASH} > ~/alignjax-venv/.alignjax-setup")
UNPACK = ("rm -rf ~/alignjax.new && mkdir -p ~/alignjax.new && tar -xzf ~/alignjax-src.tgz -C ~/alignjax.new && "
          f"rm -rf ~/alignjax && mv ~/alignjax.new ~/alignjax && echo {CODE} > ~/alignjax/.alignjax-code")
CHECK = ("echo alignjax-check $(cat ~/alignjax/.alignjax-code 2>/dev/null || echo none) "
         "$(cat ~/alignjax-venv/.alignjax-setup 2>/dev/null || echo none)")


@pytest.fixture(autouse=True)
def pinned_code_hash(monkeypatch):
    monkeypatch.setattr(launch, "tree_hash", lambda repo: CODE)


def test_tree_hash_follows_contents_and_skips_excludes(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    first = TREE_HASH(tmp_path)
    assert TREE_HASH(tmp_path) == first
    (tmp_path / "a.py").write_text("x = 2\n")
    second = TREE_HASH(tmp_path)
    assert second != first
    excluded = sorted(launch.SYNC_EXCLUDES)[0]
    (tmp_path / excluded).mkdir(exist_ok=True)
    (tmp_path / excluded / "f").write_text("ignored")
    assert TREE_HASH(tmp_path) == second


@pytest.fixture(autouse=True)
def no_gcloud(monkeypatch):
    """Nothing here may reach a real gcloud (one is installed on some machines)."""
    real = subprocess.run

    def refuse(cmd, *a, **k):
        assert cmd[0] not in ("gcloud", "tar"), f"test tried to run {cmd}"
        return real(cmd, *a, **k)
    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// paths served by fsspec's memory filesystem (epath's fsspec backend, as with gcsfs)."""
    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store, fs.pseudo_dirs = {}, [""]
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    monkeypatch.setattr(backend.fsspec_backend, "_get_filesystem", lambda name: fs)
    return fs


def _dry(capsys, *argv) -> list[list[str]]:
    own, rest = (argv[:argv.index("--")], argv[argv.index("--"):]) if "--" in argv else (argv, ())
    assert launch.main([*own, "--dry-run", *rest]) == 0
    return [shlex.split(line.split("   #")[0]) for line in capsys.readouterr().out.splitlines()]


def _run_script(train: str) -> str:
    inner = (f"cd ~/alignjax && ~/alignjax-venv/bin/alignjax-train {train} "
             "> ~/alignjax-run.log 2>&1; rc=$?; if [ $rc = 0 ] && grep -q 'SIGTERM: saved step' ~/alignjax-run.log; "
             "then rc=preempted; fi; echo $rc > ~/alignjax-run.rc")
    return ("if [ -f ~/alignjax-run.pid ] && kill -0 $(cat ~/alignjax-run.pid) 2>/dev/null; then "
            "echo 'alignjax-train is already running'; exit 1; fi; rm -f ~/alignjax-run.rc; "
            f"setsid nohup bash -c {shlex.quote(inner)} > /dev/null 2>&1 < /dev/null & echo $! > ~/alignjax-run.pid")


def test_single_host_v4_8_up(capsys):
    cmds = _dry(capsys, "up", "--name=smoke", "--zone=us-central2-b", "--accelerator=v4-8", "--spot",
                "--workdir=gs://bkt/runs/smoke", "--", "--config=configs/pythia.py:70m", "--config.train.num_steps=100")
    vm, where = ["gcloud", "compute", "tpus", "tpu-vm"], ["--zone=us-central2-b"]
    assert cmds == [
        [*vm, "create", "smoke", *where, "--accelerator-type=v4-8", "--version=tpu-ubuntu2204-base", "--spot"],
        [*vm, "describe", "smoke", *where, "--format=value(state)"],
        [*vm, "ssh", "smoke", *where, "--worker=all", f"--command={CHECK}"],
        ["tar", "-czf", "/tmp/alignjax-src-smoke.tgz", "-C", str(REPO), "--exclude=.git", "--exclude=.venv",
         "--exclude=runs", "--exclude=*.egg-info", "--exclude=__pycache__", "."],
        [*vm, "scp", "/tmp/alignjax-src-smoke.tgz", "smoke:alignjax-src.tgz", *where, "--worker=all"],
        [*vm, "ssh", "smoke", *where, "--worker=all", f"--command={UNPACK}"],
        [*vm, "ssh", "smoke", *where, "--worker=all", f"--command={SETUP}"],
        [*vm, "ssh", "smoke", *where, "--worker=all", "--command=" + _run_script(
            "--config=configs/pythia.py:70m --config.train.num_steps=100 --workdir=gs://bkt/runs/smoke")],
    ]


def test_multi_host_v5p_128_queued_spot(capsys):
    qr, where = ["gcloud", "compute", "tpus", "queued-resources"], ["--zone=us-east5-a", "--project=proj"]
    create = _dry(capsys, "create", "--name=pt", "--zone=us-east5-a", "--project=proj", "--accelerator=v5p-128",
                  "--spot", "--queued")
    assert create == [
        [*qr, "create", "pt", *where, "--accelerator-type=v5p-128", "--runtime-version=v2-alpha-tpuv5",
         "--node-id=pt", "--spot"],
        [*qr, "describe", "pt", *where, "--format=value(state.state)"],
    ]
    run = _dry(capsys, "run", "--name=pt", "--zone=us-east5-a", "--project=proj", "--accelerator=v5p-128", "--queued",
               "--env=LIBTPU_INIT_ARGS=--xla_tpu_enable_async_all_gather=true", "--workdir=gs://bkt/pt", "--",
               "--config=configs/paper.py:pretrain")
    assert run[0][:8] == [*qr, "ssh", "pt", *where]
    assert run[0][8:10] == ["--worker=all", "--node=all"]
    assert "LIBTPU_INIT_ARGS=--xla_tpu_enable_async_all_gather=true ~/alignjax-venv/bin/alignjax-train " \
           "--config=configs/paper.py:pretrain --workdir=gs://bkt/pt" in run[0][10]
    # then follows worker 0 of node 0 until the trainer's exit status appears
    assert run[1][:10] == [*qr, "ssh", "pt", *where, "--worker=0", "--node=0"]
    assert "tail -n +1 -F ~/alignjax-run.log" in run[1][10] and "exit $R" in run[1][10]
    assert _dry(capsys, "delete", "--name=pt", "--zone=us-east5-a", "--project=proj", "--accelerator=v5p-128",
                "--queued") == [[*qr, "delete", "pt", *where, "--quiet", "--force"]]


def test_multislice_uses_node_count_and_reaches_every_slice(capsys):
    cmds = _dry(capsys, "up", "--name=ms", "--zone=us-east5-a", "--accelerator=v5p-128", "--num_slices=2", "--spot",
                "--workdir=gs://bkt/ms", "--", "--config=configs/tiny.py")
    assert cmds[0] == ["gcloud", "compute", "tpus", "queued-resources", "create", "ms", "--zone=us-east5-a",
                       "--accelerator-type=v5p-128", "--runtime-version=v2-alpha-tpuv5", "--node-count=2",
                       "--node-prefix=ms", "--spot"]
    remote = [c for c in cmds if c[4] in ("ssh", "scp")]
    assert len(remote) == 5 and all(c[-3:-1] == ["--worker=all", "--node=all"] or c[-2:] == ["--worker=all", "--node=all"]
                                    for c in remote)


def test_requeue_dry_run_shows_the_recovery_path(capsys):
    cmds = _dry(capsys, "requeue", "--name=pt", "--zone=z", "--accelerator=v5p-128", "--spot", "--queued",
                "--workdir=gs://bkt/pt", "--", "--config=configs/tiny.py")
    verbs = [c[4] if c[0] == "gcloud" else c[0] for c in cmds if c[0] in ("gcloud", "tar")]
    assert verbs == ["describe", "delete", "create", "describe", "ssh", "tar", "scp", "ssh", "ssh", "ssh", "ssh"]


@pytest.mark.parametrize("name,chips,hosts", [("v4-8", 4, 1), ("v4-256", 128, 32), ("v5p-8", 4, 1),
                                              ("v5p-128", 64, 16), ("v5e-256", 256, 64), ("v5litepod-8", 8, 1),
                                              ("v5litepod-16", 16, 4), ("v6e-64", 64, 16), ("v6e-8", 8, 1)])
def test_accelerator_sizes(name, chips, hosts):
    acc = launch.parse_accelerator(name)
    assert (acc.chips, acc.hosts) == (chips, hosts)
    assert acc.name.split("-")[0] in ("v4", "v5p", "v5litepod", "v6e")


def test_bad_accelerator_is_a_one_line_error():
    r = subprocess.run([sys.executable, "-m", "alignjax.launch", "create", "--name=x", "--zone=z",
                        "--accelerator=v9-8", "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "alignjax-launch: error: --accelerator=v9-8: unknown TPU type (use v4-N, v5p-N, v5e-N (v5litepod-N) or "
        "v6e-N, e.g. v4-8, v5p-128, v5litepod-256, v6e-64)"]


@pytest.mark.parametrize("argv,message", [
    (["--accelerator=v5p-12"], "--accelerator=v5p-12: v5p slices come in sizes"),
    (["--accelerator=v5p-128", "--workdir=/tmp/run"], "a 16-host run needs a shared gs:// workdir"),
    (["--accelerator=v4-8"], "run: --workdir is required"),
    (["--accelerator=v4-8", "--queued", "--preemptible", "--workdir=gs://b/r"], "queued resources (and multislice) use --spot"),
    (["--accelerator=v4-8", "--env=NOEQUALS", "--workdir=gs://b/r"], "--env=NOEQUALS: expected KEY=VALUE"),
])
def test_launch_input_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        launch.main(["run", "--name=x", "--zone=z", *argv, "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignjax-launch: error: ") and message in err[0]


class FakeGcloud:
    """A scripted gcloud: each kind of command answers from its own list, in order, and
    ``seen`` records what ran. describe: a state, "gone" (NOT_FOUND) or "flaky" (a gcloud error);
    create: "ok" or the stderr of a failure; check: "current", "fresh" (a new VM: no code, no
    venv) or per-worker (code, venv) pairs; status: one status for every worker, or a list."""

    def __init__(self, workers, describe=(), create=(), check=(), status=()):
        self.workers, self.seen = workers, []
        self.answers = {k: list(v) for k, v in
                        dict(describe=describe, create=create, check=check, status=status).items()}

    def next(self, kind, default=None):
        assert self.answers[kind] or default is not None, f"unscripted {kind} after {self.seen}"
        return self.answers[kind].pop(0) if self.answers[kind] else default

    def fail(self, cmd, stderr, check):
        if check:
            raise launch.GcloudError(f"{cmd[4]} failed: {stderr}", launch.classify(stderr))
        return 1, stderr

    def __call__(self, lau, cmd, capture=False, check=True):
        verb = cmd[4] if cmd[0] == "gcloud" else cmd[0]
        command = next((c for c in cmd if c.startswith("--command=")), "")
        if verb == "describe":
            self.seen.append(f"describe={(st := self.next('describe'))}")
            if st == "gone":
                return 1, "ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: pt was not found"
            if st == "flaky":
                return 1, "ERROR: (gcloud.compute.tpus.queued-resources.describe) There was a problem refreshing"
            return 0, st
        if verb == "create":
            r = self.next("create", "ok")
            self.seen.append("create" if r == "ok" else f"create={r.split(':')[0]}")
            return (0, "") if r == "ok" else self.fail(cmd, r, check)
        if "alignjax-check" in command:
            r = self.next("check")
            self.seen.append(f"check={r if isinstance(r, str) else 'mixed'}")
            pairs = {"current": [(CODE, SETUP_HASH)] * self.workers, "fresh": [("none", "none")] * self.workers}
            return 0, "\n".join(f"alignjax-check {c} {v}" for c, v in (pairs[r] if isinstance(r, str) else r))
        if "alignjax-status" in command:
            r = self.next("status")
            self.seen.append(f"status={r if isinstance(r, str) else '+'.join(r)}")
            return 0, "\n".join(f"alignjax-status {x}" for x in ([r] * self.workers if isinstance(r, str) else r))
        self.seen.append("logs" if "tail -n +1 -F" in command else "run" if "alignjax-train " in command
                         else "setup" if "uv venv" in command else "unpack" if "tar -xzf" in command else verb)
        return (255 if "tail" in command else 0), ""


def _requeue(monkeypatch, fake, *argv, workdir="gs://bkt/pt", rc=0):
    """Run requeue against ``fake``; returns the launcher (its sleeps in .slept)."""
    monkeypatch.setattr(launch.Launcher, "call", lambda self, cmd, capture=False, check=True: fake(self, cmd, capture,
                                                                                                   check))
    args = launch._parser().parse_args(["requeue", "--name=pt", "--zone=z", "--spot", "--queued",
                                        f"--workdir={workdir}", "--poll_s=0", *(argv or ["--accelerator=v5p-128"])])
    lau = launch.Launcher(args, ["--config=configs/tiny.py"])
    lau.slept = []
    lau.sleep = lau.slept.append
    assert lau.do_requeue() == rc
    return lau


@pytest.fixture
def no_journal(monkeypatch):
    monkeypatch.setattr(launch.Launcher, "journal", lambda self: None)


SYNC_SETUP = ["tar", "scp", "unpack", "setup"]
RECREATE = ["delete", "create"]


def test_requeue_recreates_a_preempted_resource_and_stops_when_the_run_finishes(monkeypatch, no_journal):
    """SUSPENDED (preempted): deleted and re-created; the new workers have no code or venv, so
    they are synced and set up before the run; then a SIGTERM'd run ('preempted') whose
    resource is suspended again is re-created again, and the run finishes with status 0."""
    fake = FakeGcloud(16, describe=["SUSPENDED", "SUSPENDED", "WAITING_FOR_RESOURCES", "ACTIVE", "ACTIVE", "ACTIVE",
                                    "SUSPENDED", "SUSPENDED", "ACTIVE", "ACTIVE", "ACTIVE"],
                      check=["fresh", "fresh"], status=["idle", "rc=preempted", "idle", "rc=0"])
    _requeue(monkeypatch, fake)
    assert fake.seen == ["describe=SUSPENDED", "describe=SUSPENDED", *RECREATE, "describe=WAITING_FOR_RESOURCES",
                         "describe=ACTIVE", "describe=ACTIVE", "status=idle", "check=fresh", *SYNC_SETUP, "run", "logs",
                         "describe=ACTIVE", "status=rc=preempted",  # not finished: wait for the resource to go
                         "describe=SUSPENDED", "describe=SUSPENDED", *RECREATE, "describe=ACTIVE",
                         "describe=ACTIVE", "status=idle", "check=fresh", *SYNC_SETUP, "run", "logs",
                         "describe=ACTIVE", "status=rc=0"]


def test_requeue_resumes_on_a_vm_that_survived_a_sigterm(monkeypatch, no_journal):
    fake = FakeGcloud(16, describe=["READY"] * 4, check=["current"], status=["rc=preempted"] * 3 + ["rc=0"])
    _requeue(monkeypatch, fake)
    assert fake.seen == ["describe=READY", "status=rc=preempted"] * 3 + ["check=current", "run", "logs",
                                                                          "describe=READY", "status=rc=0"]


def test_requeue_retries_a_recreate_that_finds_no_capacity(monkeypatch, no_journal):
    """A preempted Spot VM whose re-create returns RESOURCE_EXHAUSTED (twice): retried after
    backoffs that double, not given up after the first (before: exit 2 at restart 1 of 100)."""
    fake = FakeGcloud(1, describe=["PREEMPTED", "PREEMPTED", "gone", "gone", "READY", "READY", "READY"],
                      create=["RESOURCE_EXHAUSTED: There is no more capacity in the zone us-central2-b",
                              "ERROR: stockout in zone"],
                      check=["fresh"], status=["idle", "rc=0"])
    lau = _requeue(monkeypatch, fake, "--accelerator=v4-8", "--backoff_s=5", "--max_backoff_s=7")
    assert fake.seen == ["describe=PREEMPTED", "describe=PREEMPTED", "delete", "create=RESOURCE_EXHAUSTED",
                         "describe=gone", "create=ERROR", "describe=gone", "create", "describe=READY",
                         "describe=READY", "status=idle", "check=fresh", *SYNC_SETUP, "run", "logs",
                         "describe=READY", "status=rc=0"]
    assert lau.slept == [5, 7] and lau.restarts == 1


def test_requeue_recreates_a_queued_resource_that_goes_failed(monkeypatch, no_journal):
    """A re-created queued resource that goes FAILED while provisioning is deleted and
    requested again (before: wait_ready raised and requeue ended)."""
    fake = FakeGcloud(16, describe=["SUSPENDED", "SUSPENDED", "PROVISIONING", "FAILED", "FAILED", "ACTIVE", "ACTIVE",
                                    "ACTIVE"], check=["fresh"], status=["idle", "rc=0"])
    lau = _requeue(monkeypatch, fake, "--accelerator=v5p-128", "--backoff_s=1")
    assert fake.seen == ["describe=SUSPENDED", "describe=SUSPENDED", *RECREATE, "describe=PROVISIONING",
                         "describe=FAILED", "describe=FAILED", *RECREATE, "describe=ACTIVE", "describe=ACTIVE",
                         "status=idle", "check=fresh", *SYNC_SETUP, "run", "logs", "describe=ACTIVE", "status=rc=0"]
    assert lau.slept == [0, 1] and lau.restarts == 1  # one poll while provisioning, one backoff


def test_requeue_syncs_and_sets_up_a_repaired_slice_before_running(monkeypatch, no_journal):
    """Multislice of single-host slices (2 x v5p-8): Cloud TPU replaced slice 1 by a fresh one
    (no code hash, no venv) and slice 0's trainer failed with it. Before the run, the check
    finds the new worker, and the code is synced and set up again (before: only `run`)."""
    fake = FakeGcloud(2, describe=["ACTIVE", "ACTIVE"], check=[[(CODE, SETUP_HASH), ("none", "none")]],
                      status=[["rc=1", "idle"], "rc=0"])
    _requeue(monkeypatch, fake, "--accelerator=v5p-8", "--num_slices=2")
    assert fake.seen == ["describe=ACTIVE", "status=rc=1+idle", "check=mixed", *SYNC_SETUP, "run", "logs",
                         "describe=ACTIVE", "status=rc=0"]


def test_requeue_syncs_stale_code_without_reinstalling(monkeypatch, no_journal):
    fake = FakeGcloud(2, describe=["ACTIVE", "ACTIVE"], check=[[(CODE, SETUP_HASH), ("0ld", SETUP_HASH)]],
                      status=["idle", "rc=0"])
    _requeue(monkeypatch, fake, "--accelerator=v5p-8", "--num_slices=2")
    assert fake.seen == ["describe=ACTIVE", "status=idle", "check=mixed", "tar", "scp", "unpack", "run", "logs",
                         "describe=ACTIVE", "status=rc=0"]


def test_requeue_returns_a_failed_run_status(monkeypatch, no_journal):
    fake = FakeGcloud(16, describe=["ACTIVE"], status=[["rc=0"] * 15 + ["rc=2"]])
    _requeue(monkeypatch, fake, rc=2)
    assert fake.seen == ["describe=ACTIVE", "status=" + "+".join(["rc=0"] * 15 + ["rc=2"])]


@pytest.mark.parametrize("stderr", [
    "ERROR: (gcloud.compute.tpus.tpu-vm.create) RESOURCE_EXHAUSTED: Quota limit 'TPUV4sPodPerProjectPerZone' exceeded",
    "ERROR: (gcloud.compute.tpus.tpu-vm.create) PERMISSION_DENIED: Permission 'tpu.nodes.create' denied",
    "ERROR: (gcloud.compute.tpus.tpu-vm.create) INVALID_ARGUMENT: Invalid value for field 'acceleratorType'",
])
def test_requeue_stops_at_a_permanent_error_with_one_line(monkeypatch, capsys, stderr):
    fake = FakeGcloud(1, describe=["PREEMPTED", "PREEMPTED"], create=[stderr])
    monkeypatch.setattr(launch.Launcher, "call", lambda self, cmd, capture=False, check=True: fake(self, cmd, capture,
                                                                                                   check))
    monkeypatch.setattr(launch.Launcher, "journal", lambda self: None)
    with pytest.raises(SystemExit) as e:
        launch.main(["requeue", "--name=pt", "--zone=z", "--accelerator=v4-8", "--workdir=gs://b/r", "--poll_s=0"])
    assert e.value.code == 2 and fake.seen == ["describe=PREEMPTED", "describe=PREEMPTED", "delete", "create=ERROR"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignjax-launch: error: re-create: ") and stderr in err[0]


def test_requeue_gives_up_after_max_retries(monkeypatch, no_journal):
    fake = FakeGcloud(1, describe=["PREEMPTED", "PREEMPTED", "gone", "gone"], create=["RESOURCE_EXHAUSTED: x"] * 3)
    monkeypatch.setattr(launch.Launcher, "call", lambda self, cmd, capture=False, check=True: fake(self, cmd, capture,
                                                                                                   check))
    args = launch._parser().parse_args(["requeue", "--name=pt", "--zone=z", "--accelerator=v4-8",
                                        "--workdir=gs://b/r", "--max_retries=2", "--backoff_s=1"])
    lau = launch.Launcher(args, [])
    lau.sleep = lambda s: None
    with pytest.raises(launch.LaunchError, match=r"re-create: .*RESOURCE_EXHAUSTED: x \(after 2 retries\)"):
        lau.do_requeue()


@pytest.mark.parametrize("trainer,status,logs_rc", [
    ("echo 'step 1: loss 6.2'; exit 0", "rc=0", 0),
    ("echo 'WARNING alignjax: SIGTERM: saved step 7, exiting' >&2; exit 0", "rc=preempted", 143),
    ("echo 'alignjax-train: error: bad' >&2; exit 2", "rc=2", 2),
])
def test_worker_scripts_run_in_a_shell(tmp_path, trainer, status, logs_rc):
    """The run / status / logs snippets, executed by bash in a fake worker home with a stand-in
    alignjax-train: detached start, exit status (preemption told apart), log follower's status."""
    (tmp_path / "alignjax").mkdir()
    bin_dir = tmp_path / "alignjax-venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "alignjax-train").write_text(f"#!/bin/bash\necho args: \"$@\"\nsleep 1\n{trainer}\n")
    (bin_dir / "alignjax-train").chmod(0o755)
    args = launch._parser().parse_args(["run", "--name=n", "--zone=z", "--accelerator=v4-8", "--workdir=gs://b/r"])
    lau = launch.Launcher(args, ["--config=configs/tiny.py"])
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def sh(cmd):
        script = next(c for c in cmd if c.startswith("--command="))[len("--command="):]
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)

    assert sh(lau.run()).returncode == 0
    again = sh(lau.run())  # the first is still running (sleep 1): refused
    assert again.returncode == 1 and "already running" in again.stdout
    follow = sh(lau.logs())
    assert follow.returncode == logs_rc
    assert "args: --config=configs/tiny.py --workdir=gs://b/r" in follow.stdout
    assert sh(lau.remote_status()).stdout.strip() == f"alignjax-status {status}"
    assert lau.summarize(sh(lau.remote_status()).stdout) == status


def test_requeue_waits_out_gcloud_errors_and_recreates_a_deleted_resource(monkeypatch, no_journal):
    fake = FakeGcloud(16, describe=["flaky", "gone", "gone", "ACTIVE", "ACTIVE", "ACTIVE"], check=["fresh"],
                      status=["idle", "rc=0"])
    _requeue(monkeypatch, fake)
    assert fake.seen == ["describe=flaky", "describe=gone", "describe=gone", "create", "describe=ACTIVE",
                         "describe=ACTIVE", "status=idle", "check=fresh", *SYNC_SETUP, "run", "logs",
                         "describe=ACTIVE", "status=rc=0"]


def test_requeue_keeps_its_restart_count_in_the_workdir_on_gs(monkeypatch, fake_gcs):
    """Two preemptions, then requeue itself is stopped (its machine went away) and started
    again: the new loop reads gs://.../launch.jsonl and continues the count."""
    fake = FakeGcloud(1, describe=["PREEMPTED", "PREEMPTED", "READY", "READY", "READY", "PREEMPTED", "PREEMPTED",
                                   "READY", "READY"], check=["fresh"] * 2, status=["idle", "rc=preempted", "idle"])
    monkeypatch.setattr(launch.Launcher, "call", lambda self, cmd, capture=False, check=True: fake(self, cmd, capture,
                                                                                                   check))
    args = launch._parser().parse_args(["requeue", "--name=pt", "--zone=z", "--accelerator=v4-8",
                                        "--workdir=gs://bkt/pt", "--poll_s=0", "--max_restarts=3"])
    lau = launch.Launcher(args, [])
    lau.sleep = lambda s: None
    with pytest.raises(AssertionError, match="unscripted describe"):  # the requeue machine stops here
        lau.do_requeue()
    rows = [json.loads(x) for x in fake_gcs.cat("gs://bkt/pt/launch.jsonl").decode().splitlines()]
    assert rows[-1]["restarts"] == 2 and rows[-1]["state"] == "running"
    assert [r["state"] for r in rows] == ["watching", "recreating", "syncing", "setting_up", "running",
                                          "recreating", "syncing", "setting_up", "running"]
    fake = FakeGcloud(1, describe=["PREEMPTED", "PREEMPTED", "READY", "READY", "PREEMPTED"], check=["fresh"],
                      status=["idle"])
    again = launch.Launcher(args, [])
    again.sleep = lambda s: None
    with pytest.raises(launch.LaunchError, match="state PREEMPTED after 3 restarts; giving up"):
        again.do_requeue()  # restart 3 of 3, then the limit
    rows = [json.loads(x) for x in fake_gcs.cat("gs://bkt/pt/launch.jsonl").decode().splitlines()]
    assert [(r["state"], r["restarts"]) for r in rows[9:]] == [("watching", 2), ("recreating", 3), ("syncing", 3),
                                                               ("setting_up", 3), ("running", 3), ("gave_up", 3)]


def test_env_values_with_spaces_quotes_and_dollars_reach_the_trainer(tmp_path):
    """--env=KEY=VALUE quotes the value only (before: the whole pair, which bash ran as a
    command: exit 127 on every worker)."""
    values = {"LIBTPU_INIT_ARGS": "--a=true --b=true", "Q": "it's \"quoted\"", "D": "$HOME and $(echo no) `x`",
              "E": "a=b=c", "EMPTY": ""}
    (tmp_path / "alignjax").mkdir()
    bin_dir = tmp_path / "alignjax-venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "alignjax-train").write_text(
        "#!/bin/bash\n" + "".join(f"printf '%s\\n' \"{k}=[${k}]\"\n" for k in values))
    (bin_dir / "alignjax-train").chmod(0o755)
    args = launch._parser().parse_args(["run", "--name=n", "--zone=z", "--accelerator=v4-8", "--workdir=gs://b/r",
                                        *(f"--env={k}={v}" for k, v in values.items())])
    lau = launch.Launcher(args, [])
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def sh(cmd):
        script = next(c for c in cmd if c.startswith("--command="))[len("--command="):]
        return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)

    assert sh(lau.run()).returncode == 0
    assert sh(lau.logs()).returncode == 0
    log = (tmp_path / "alignjax-run.log").read_text().splitlines()
    assert log == [f"{k}=[{v}]" for k, v in values.items()]
