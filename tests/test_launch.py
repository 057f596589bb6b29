"""alignjax-launch: the gcloud commands for a single-host v4-8, a multi-host v5p-128 and a
multislice run, input errors, and the requeue loop against a scripted gcloud."""

import shlex
import subprocess
import sys

import pytest

from alignjax import launch
from conftest import REPO

SETUP = ("python3 -m pip install -q --user uv && ~/.local/bin/uv venv -q --allow-existing --python 3.11 "
         "~/alignjax-venv && ~/.local/bin/uv pip install -q --python ~/alignjax-venv/bin/python -e "
         "\"$HOME/alignjax[tpu,hub]\" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html")
UNPACK = ("rm -rf ~/alignjax.new && mkdir -p ~/alignjax.new && tar -xzf ~/alignjax-src.tgz -C ~/alignjax.new && "
          "rm -rf ~/alignjax && mv ~/alignjax.new ~/alignjax")


@pytest.fixture(autouse=True)
def no_gcloud(monkeypatch):
    """Nothing here may reach a real gcloud (one is installed on some machines)."""
    real = subprocess.run

    def refuse(cmd, *a, **k):
        assert cmd[0] not in ("gcloud", "tar"), f"test tried to run {cmd}"
        return real(cmd, *a, **k)
    monkeypatch.setattr(subprocess, "run", refuse)


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
    assert len(remote) == 4 and all(c[-3:-1] == ["--worker=all", "--node=all"] or c[-2:] == ["--worker=all", "--node=all"]
                                    for c in remote)


def test_requeue_dry_run_shows_the_recovery_path(capsys):
    cmds = _dry(capsys, "requeue", "--name=pt", "--zone=z", "--accelerator=v5p-128", "--spot", "--queued",
                "--workdir=gs://bkt/pt", "--", "--config=configs/tiny.py")
    verbs = [c[4] if c[0] == "gcloud" else c[0] for c in cmds if c[0] in ("gcloud", "tar")]
    assert verbs == ["describe", "delete", "create", "describe", "tar", "scp", "ssh", "ssh", "ssh", "ssh"]


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


def _scripted_requeue(monkeypatch, states, remote) -> list[str]:
    """Run the requeue loop against a scripted gcloud; returns what it did, in order."""
    states, remote, seen = iter(states), iter(remote), []

    def fake_call(self, cmd, capture=False, check=True):
        verb = cmd[4] if cmd[0] == "gcloud" else cmd[0]
        command = next((c for c in cmd if c.startswith("--command=")), "")
        if verb == "describe":
            seen.append(f"describe={(st := next(states))}")
            if st == "gone":
                return 1, "ERROR: (gcloud.compute.tpus.queued-resources.describe) NOT_FOUND: pt was not found"
            if st == "flaky":
                return 1, "ERROR: (gcloud.compute.tpus.queued-resources.describe) There was a problem refreshing"
            return 0, st
        if "echo running" in command:  # remote_status
            seen.append(f"status={(st := next(remote))}")
            return 0, st
        seen.append("logs" if "tail -n +1 -F" in command else "run" if "alignjax-train " in command
                    else "setup" if "uv venv" in command else verb)
        return (255 if "tail" in command else 0), ""

    monkeypatch.setattr(launch.Launcher, "call", fake_call)
    monkeypatch.setattr(launch.time, "sleep", lambda s: None)
    args = launch._parser().parse_args(["requeue", "--name=pt", "--zone=z", "--accelerator=v5p-128", "--spot",
                                        "--queued", "--workdir=gs://bkt/pt", "--poll_s=0"])
    assert launch.Launcher(args, ["--config=configs/tiny.py"]).do_requeue() == 0
    return seen


RECREATE = ["delete", "create", "tar", "scp", "ssh", "setup", "run"]


def test_requeue_recreates_a_preempted_resource_and_stops_when_the_run_finishes(monkeypatch):
    """The queued resource is SUSPENDED (preempted); it comes back ACTIVE after recreation, the
    trainer runs, then is SIGTERM'd (saved, 'preempted'), the resource is suspended and recreated
    again, and the run finishes with exit status 0."""
    seen = _scripted_requeue(
        monkeypatch, ["SUSPENDED", "WAITING_FOR_RESOURCES", "ACTIVE", "ACTIVE", "ACTIVE", "SUSPENDED", "ACTIVE",
                      "ACTIVE"], ["running", "rc=preempted", "rc=0"])
    assert seen == ["describe=SUSPENDED", *RECREATE[:2], "describe=WAITING_FOR_RESOURCES", "describe=ACTIVE",
                    *RECREATE[2:], "describe=ACTIVE", "status=running", "logs",
                    "describe=ACTIVE", "status=rc=preempted",  # not finished: wait for the resource to go
                    "describe=SUSPENDED", *RECREATE[:2], "describe=ACTIVE", *RECREATE[2:],
                    "describe=ACTIVE", "status=rc=0"]


def test_requeue_resumes_on_a_vm_that_survived_a_sigterm(monkeypatch):
    seen = _scripted_requeue(monkeypatch, ["READY"] * 4, ["rc=preempted"] * 3 + ["rc=0"])
    assert seen == ["describe=READY", "status=rc=preempted"] * 3 + ["run", "logs", "describe=READY", "status=rc=0"]


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
    assert sh(lau.remote_status()).stdout.strip() == status


def test_requeue_waits_out_gcloud_errors_and_recreates_a_deleted_resource(monkeypatch):
    seen = _scripted_requeue(monkeypatch, ["flaky", "gone", "ACTIVE", "ACTIVE"], ["rc=0"])
    assert seen == ["describe=flaky", "describe=gone", "create", "describe=ACTIVE", *RECREATE[2:],
                    "describe=ACTIVE", "status=rc=0"]
