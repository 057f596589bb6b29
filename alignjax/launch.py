"""Cloud TPU launcher (``alignjax-launch``): create a TPU VM or a queued resource, install the
pinned environment and sync the code on every worker, run ``alignjax-train`` on all of them
with the run directory on gs://, follow the log, recreate and resume after a preemption, and
tear down. Everything goes through ``gcloud``; ``--dry-run`` prints the commands instead.

    alignjax-launch up --name=smoke --zone=us-central2-b --accelerator=v4-8 \\
        --workdir=gs://bucket/runs/smoke -- --config=configs/pythia.py:70m --config.train.num_steps=100
    alignjax-launch up --name=pt --zone=us-east5-a --accelerator=v5p-128 --spot --queued \\
        --workdir=gs://bucket/runs/pt -- --config=configs/paper.py:pretrain

Subcommands: create, setup (install), sync (code), run (start + follow), logs, status,
requeue (watch; recreate + resume after preemption), delete, up (create, then requeue).
Multislice (``--num_slices=N``) uses a queued resource with ``--node-count``; the TPU runtime
puts MEGASCALE_* into every VM's tpu-env metadata, which ``alignjax.distributed.initialize``
reads, so all slices join one process group.

requeue is a state machine whose every gcloud step retries capacity and transient errors with
backoff (``--backoff_s`` doubling to ``--max_backoff_s``, ``--max_retries`` per step) and stops
at once, exit 2, on permanent ones (bad flags, quota, permission); it keeps the restart count
and its last state in ``<workdir>/launch.jsonl``, so a restarted requeue continues the count.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from alignjax.cli import Parser
from alignjax.config import cli_error

REMOTE_CODE = "~/alignjax"  # code (replaced on every sync)
REMOTE_VENV = "~/alignjax-venv"  # environment (kept across syncs)
LOG, RC, PID = "~/alignjax-run.log", "~/alignjax-run.rc", "~/alignjax-run.pid"
CODE_MARK, VENV_MARK = f"{REMOTE_CODE}/.alignjax-code", f"{REMOTE_VENV}/.alignjax-setup"  # hashes, written on success
SYNC_EXCLUDES = (".git", ".venv", "runs", "*.egg-info", "__pycache__")
SIGTERM_LINE = "SIGTERM: saved step"  # what alignjax-train logs when a preemption notice stopped it
LIBTPU_LINKS = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"

# generation -> (gcloud accelerator prefix, default runtime version, TensorCores per chip in the
# name's count, chips per host, slice sizes (the name's count) that exist).
_POW2 = tuple(2**i for i in range(3, 13))
GENERATIONS = {
    "v4": ("v4", "tpu-ubuntu2204-base", 2, 4, _POW2),
    "v5p": ("v5p", "v2-alpha-tpuv5", 2, 4, _POW2),
    "v5e": ("v5litepod", "v2-alpha-tpuv5-lite", 1, 4, (1, 4, 8, 16, 32, 64, 128, 256)),
    "v6e": ("v6e", "v2-alpha-tpuv6e", 1, 4, (1, 4, 8, 16, 32, 64, 128, 256)),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e"}
# v5e/v6e slices of up to 8 chips are one host (ct5lp-hightpu-8t, ct6e-standard-8t).
_SINGLE_HOST_CHIPS = {"v5e": 8, "v6e": 8}

PREEMPTED = {"SUSPENDED", "SUSPENDING", "FAILED", "PREEMPTED", "TERMINATED", "STOPPED"}
READY = {"ACTIVE", "READY"}

# gcloud's stderr -> what to do. Permanent is tested first: a quota error is also RESOURCE_EXHAUSTED.
PERMANENT = re.compile(r"quota|PERMISSION_DENIED|permission|INVALID_ARGUMENT|unrecognized arguments|"
                       r"invalid (choice|value)|UNAUTHENTICATED|billing|FAILED_PRECONDITION|argument --", re.I)
CAPACITY = re.compile(r"RESOURCE_EXHAUSTED|stockout|no more capacity|insufficient capacity|"
                      r"not enough resources|capacity", re.I)


class LaunchError(Exception):
    pass


class GcloudError(LaunchError):
    """A failed gcloud command; ``kind`` is capacity, transient (both retried) or permanent."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def classify(stderr: str) -> str:
    return "permanent" if PERMANENT.search(stderr) else "capacity" if CAPACITY.search(stderr) else "transient"


def tree_hash(repo: str | os.PathLike) -> str:
    """The code version a sync ships: paths and contents of what tar packs (same excludes)."""
    h, root = hashlib.sha256(), Path(repo)
    skip = lambda name: name in SYNC_EXCLUDES or name.endswith(".egg-info")  # noqa: E731
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not skip(x))
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(d, f), root)
            h.update(rel.encode() + b"\0")
            with open(os.path.join(d, f), "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str  # as gcloud spells it: v4-8, v5p-128, v5litepod-256, v6e-64
    generation: str
    chips: int
    hosts: int
    runtime: str


def parse_accelerator(text: str) -> Accelerator:
    m = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v5lite|v6e)-(\d+)", text.strip().lower())
    known = "v4-N, v5p-N, v5e-N (v5litepod-N) or v6e-N, e.g. v4-8, v5p-128, v5litepod-256, v6e-64"
    if not m:
        raise LaunchError(f"--accelerator={text}: unknown TPU type (use {known})")
    gen = _ALIASES.get(m.group(1), m.group(1))
    prefix, runtime, cores_per_chip, chips_per_host, sizes = GENERATIONS[gen]
    count = int(m.group(2))
    if count not in sizes:
        raise LaunchError(f"--accelerator={text}: {gen} slices come in sizes {', '.join(map(str, sizes))}")
    chips = count // cores_per_chip
    hosts = 1 if chips <= _SINGLE_HOST_CHIPS.get(gen, chips_per_host) else chips // chips_per_host
    return Accelerator(f"{prefix}-{count}", gen, chips, hosts, runtime)


# ----------------------------------------------------------------------------- commands


class Launcher:
    """Builds (and runs, unless dry-run) the gcloud commands for one TPU VM / queued resource."""

    def __init__(self, args, train_args: list[str]):
        self.a, self.acc = args, parse_accelerator(args.accelerator)
        self.queued = args.queued or args.num_slices > 1  # multislice exists only as queued resources
        if args.num_slices < 1:
            raise LaunchError(f"--num_slices={args.num_slices} must be >= 1")
        if args.preemptible and args.spot:
            raise LaunchError("--spot and --preemptible are alternatives; pick one")
        if args.preemptible and self.queued:
            raise LaunchError("--preemptible is for single TPU VMs; queued resources (and multislice) use --spot")
        self.train_args = list(train_args)
        if args.workdir:
            self.train_args.append(f"--workdir={args.workdir}")
        workdirs = [a.split("=", 1)[1] for a in self.train_args if a.startswith("--workdir=")]
        self.workdir = workdirs[-1] if workdirs else None
        self.multi_host = self.acc.hosts * args.num_slices > 1
        self.sleep = time.sleep  # the tests make backoff and polling instant
        self.restarts, self.last = 0, {}

    # -- the pieces

    def _where(self) -> list[str]:
        return [f"--zone={self.a.zone}"] + ([f"--project={self.a.project}"] if self.a.project else [])

    def _api(self) -> list[str]:
        return ["gcloud", "compute", "tpus", "queued-resources" if self.queued else "tpu-vm"]

    def _all(self) -> list[str]:  # every worker of every slice
        return ["--worker=all", "--node=all"] if self.queued else ["--worker=all"]

    def ssh(self, command: str, workers: list[str] | None = None) -> list[str]:
        return [*self._api(), "ssh", self.a.name, *self._where(), *(workers or self._all()), f"--command={command}"]

    def create(self) -> list[str]:
        cmd = [*self._api(), "create", self.a.name, *self._where(), f"--accelerator-type={self.acc.name}"]
        runtime = self.a.runtime_version or self.acc.runtime
        if self.queued:
            cmd.append(f"--runtime-version={runtime}")
            cmd += ([f"--node-count={self.a.num_slices}", f"--node-prefix={self.a.name}"] if self.a.num_slices > 1
                    else [f"--node-id={self.a.name}"])
        else:
            cmd.append(f"--version={runtime}")
        return cmd + (["--spot"] if self.a.spot else []) + (["--preemptible"] if self.a.preemptible else [])

    def describe(self) -> list[str]:
        field = "state.state" if self.queued else "state"
        return [*self._api(), "describe", self.a.name, *self._where(), f"--format=value({field})"]

    def delete(self) -> list[str]:
        return [*self._api(), "delete", self.a.name, *self._where(), "--quiet"] + (["--force"] if self.queued else [])

    def archive(self) -> str:
        return f"/tmp/alignjax-src-{self.a.name}.tgz"

    def sync(self) -> list[list[str]]:
        """Pack the working tree (what would be committed plus local edits, no venv/runs/.git),
        copy it to every worker and unpack it in place of the previous copy."""
        pack = ["tar", "-czf", self.archive(), "-C", str(self.a.repo), *(f"--exclude={x}" for x in SYNC_EXCLUDES), "."]
        scp = [*self._api(), "scp", self.archive(), f"{self.a.name}:alignjax-src.tgz", *self._where(), *self._all()]
        # The code hash is written last: a worker whose unpack was cut short shows no version.
        unpack = (f"rm -rf {REMOTE_CODE}.new && mkdir -p {REMOTE_CODE}.new && tar -xzf ~/alignjax-src.tgz -C "
                  f"{REMOTE_CODE}.new && rm -rf {REMOTE_CODE} && mv {REMOTE_CODE}.new {REMOTE_CODE} && "
                  f"echo {self.code_hash()} > {CODE_MARK}")
        return [pack, scp, self.ssh(unpack)]

    def code_hash(self) -> str:
        if not hasattr(self, "_code_hash"):
            self._code_hash = tree_hash(self.a.repo)
        return self._code_hash

    def setup_hash(self) -> str:
        """The environment's version: the install command and the pins it installs."""
        h = hashlib.sha256(self._install().encode())
        for f in ("setup.cfg", "pyproject.toml"):
            if (Path(self.a.repo) / f).exists():
                h.update((Path(self.a.repo) / f).read_bytes())
        return h.hexdigest()[:16]

    def check(self) -> list[str]:
        """Every worker prints its code and environment versions (``none`` where missing)."""
        return self.ssh(f"echo alignjax-check $(cat {CODE_MARK} 2>/dev/null || echo none) "
                        f"$(cat {VENV_MARK} 2>/dev/null || echo none)")

    def setup(self) -> list[str]:
        """The pinned environment from setup.cfg (jax/libtpu, flax, orbax, grain, gcsfs) in a venv.
        TPU VM images ship Python 3.10; uv brings the interpreter the package needs."""
        return self.ssh(f"{self._install()} && echo {self.setup_hash()} > {VENV_MARK}")

    def _install(self) -> str:
        uv = "~/.local/bin/uv"
        return (f"python3 -m pip install -q --user uv && {uv} venv -q --allow-existing --python {self.a.python} "
                f"{REMOTE_VENV} && {uv} pip install -q --python {REMOTE_VENV}/bin/python -e "
                f"\"$HOME/alignjax[tpu,hub]\" -f {LIBTPU_LINKS}")

    def run(self) -> list[str]:
        """Start alignjax-train on every worker, detached from the ssh session (a dropped
        connection must not kill a pod-wide run); worker output goes to ~/alignjax-run.log and
        the exit status to ~/alignjax-run.rc. Refuses to start a second copy."""
        if not self.workdir:
            raise LaunchError("run: --workdir is required (gs://bucket/path; every worker writes there)")
        if self.multi_host and not self.workdir.startswith("gs://"):
            raise LaunchError(f"--workdir={self.workdir}: a {self.acc.hosts * self.a.num_slices}-host run needs a "
                              "shared gs:// workdir (each worker has its own disk)")
        # KEY=<quoted value>: quoting the whole pair would make bash run it as a command.
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (e.split("=", 1) for e in self.a.env))
        train = " ".join(shlex.quote(x) for x in self.train_args)
        # A SIGTERM (preemption notice) also ends the trainer with 0 after saving; its log line
        # tells requeue that the run is not finished.
        inner = (f"cd {REMOTE_CODE} && {env + ' ' if env else ''}{REMOTE_VENV}/bin/alignjax-train "
                 f"{train} > {LOG} 2>&1; rc=$?; if [ $rc = 0 ] && grep -q {shlex.quote(SIGTERM_LINE)} {LOG}; "
                 f"then rc=preempted; fi; echo $rc > {RC}")
        script = (f"if [ -f {PID} ] && kill -0 $(cat {PID}) 2>/dev/null; then echo 'alignjax-train is already running'; "
                  f"exit 1; fi; rm -f {RC}; setsid nohup bash -c {shlex.quote(inner)} > /dev/null 2>&1 < /dev/null & "
                  f"echo $! > {PID}")  # written before returning, so a second start is refused
        return self.ssh(script)

    def logs(self, follow: bool = True) -> list[str]:
        """Worker 0 (process 0 prints the step lines): the whole log, then follow it until the
        trainer exits, with its exit status; or the last lines of every worker's log."""
        if self.a.worker != "0" or not follow:
            return self.ssh(f"tail -n {self.a.lines} {LOG}", self._workers(self.a.worker))
        script = (f"tail -n +1 -F {LOG} & T=$!; while [ ! -f {RC} ]; do sleep 2; done; sleep 1; kill $T; "
                  f"R=$(cat {RC}); [ \"$R\" = preempted ] && exit 143; exit $R")
        return self.ssh(script, self._workers("0"))

    def remote_status(self) -> list[str]:
        """One line per worker of every slice: rc=<status>, running, or idle (never started here,
        e.g. a VM or slice that Cloud TPU just replaced)."""
        script = (f"if [ -f {RC} ]; then echo alignjax-status rc=$(cat {RC}); elif [ -f {PID} ] && "
                  f"kill -0 $(cat {PID}) 2>/dev/null; then echo alignjax-status running; else echo alignjax-status idle; fi")
        return self.ssh(script)

    def summarize(self, out: str) -> str:
        """All workers' status as one: idle if any worker is (missing code/venv or a lost run:
        restart), then preempted, then a failure, then running, then finished (rc=0)."""
        got = [line.split()[1] for line in out.splitlines() if line.startswith("alignjax-status ")]
        got += ["idle"] * (self.acc.hosts * self.a.num_slices - len(got))
        for want in ("idle", "rc=preempted"):
            if want in got:
                return want
        failed = [s for s in got if s.startswith("rc=") and s != "rc=0"]
        return failed[0] if failed else "running" if "running" in got else "rc=0"

    def _workers(self, worker: str) -> list[str]:
        return [f"--worker={worker}"] + (["--node=0" if worker != "all" else "--node=all"] if self.queued else [])

    # -- execution

    def call(self, cmd: list[str], capture: bool = False, check: bool = True) -> tuple[int, str]:
        if self.a.dry_run or not capture:  # echo what runs; captured queries stay quiet
            print(shlex.join(cmd), flush=True)
        if self.a.dry_run:
            return 0, ""
        # stderr is always kept (and shown when not capturing): it tells capacity from permanent errors.
        r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
        if not capture and r.stderr:
            sys.stderr.write(r.stderr)
        err = (r.stderr or "").strip()
        if check and r.returncode:
            raise GcloudError(f"{shlex.join(cmd[:6])} ... exited with {r.returncode}"
                              + (f": {err.splitlines()[-1]}" if err else ""), classify(err))
        # stdout, or on failure stderr (the caller tells "not found" from other errors)
        return r.returncode, ((err if r.returncode else r.stdout) or "").strip()

    def state(self) -> str:
        """The resource's state; '' when it does not exist (or in a dry run); UNKNOWN when
        gcloud failed otherwise (network, auth): callers wait rather than recreate."""
        rc, out = self.call(self.describe(), capture=True, check=False)
        if rc:
            return "" if "NOT_FOUND" in out or "not found" in out.lower() else "UNKNOWN"
        return out.splitlines()[-1].strip() if out else ""

    def wait_ready(self) -> None:
        if self.a.dry_run:
            print(shlex.join(self.describe()), "  # polled until", "ACTIVE" if self.queued else "READY")
            return
        last = None
        while (st := self.state()) not in READY:
            if st in PREEMPTED or not st and last is not None:  # a re-created queued resource can go FAILED
                raise GcloudError(f"{self.a.name} went to state {st or 'deleted'} while waiting for it", "capacity")
            if st != last:
                print(f"alignjax-launch: {self.a.name}: {st or 'requested'}", flush=True)
            last = st
            self.sleep(self.a.poll_s)

    def do_create(self):
        self.call(self.create())
        self.wait_ready()

    def do_sync(self):
        for cmd in self.sync():
            self.call(cmd)

    # -- requeue: a state machine whose steps retry

    def retry(self, what: str, step):
        """Run ``step``; a capacity or transient gcloud error is retried after a backoff that
        doubles up to --max_backoff_s, at most --max_retries times; a permanent one raises."""
        for attempt in range(self.a.max_retries + 1):
            try:
                return step()
            except GcloudError as e:
                if e.kind == "permanent" or attempt == self.a.max_retries:
                    self.record("gave_up", step=what, error=str(e))
                    raise LaunchError(f"{what}: {e}" + ("" if e.kind == "permanent" else
                                                         f" (after {attempt} retries)")) from None
                wait = min(self.a.backoff_s * 2 ** attempt, self.a.max_backoff_s)
                self.record("retrying", step=what, kind=e.kind, attempt=attempt + 1, error=str(e))
                print(f"alignjax-launch: {what}: {e.kind} error ({e}); retry {attempt + 1} in {wait:.0f}s",
                      flush=True)
                self.sleep(wait)

    def journal(self):
        return None if self.a.dry_run or not self.workdir else f"{self.workdir.rstrip('/')}/launch.jsonl"

    def record(self, state: str, **info) -> None:
        """Append the loop's state to <workdir>/launch.jsonl (gs:// objects cannot be appended
        to: read, add the line, write back; the file stays small)."""
        self.last = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "name": self.a.name, "state": state, "restarts": self.restarts, **info}
        if (path := self.journal()) is None:
            return
        from etils import epath

        p = epath.Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        old = p.read_text() if p.exists() else ""
        p.write_text(old + json.dumps(self.last) + "\n")

    def resume_count(self) -> int:
        """The restart count of an earlier requeue of this resource and workdir."""
        if (path := self.journal()) is None:
            return 0
        from etils import epath

        p = epath.Path(path)
        rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.exists() else []
        rows = [r for r in rows if r.get("name") == self.a.name]
        return int(rows[-1].get("restarts", 0)) if rows else 0

    def recreate(self) -> None:
        """Delete what is left of the resource (a FAILED / SUSPENDED one, or a preempted VM),
        create it again and wait until it is ready."""
        st = "SUSPENDED" if self.a.dry_run else self.state()  # a dry run shows the delete
        if st == "UNKNOWN":
            raise GcloudError(f"{self.a.name}: describe failed", "transient")
        if st:
            rc, out = self.call(self.delete(), check=False)
            if rc and "not found" not in out.lower():
                raise GcloudError(f"delete {self.a.name} exited with {rc}: {out.splitlines()[-1] if out else ''}",
                                  classify(out))
        self.do_create()

    def prepare(self) -> None:
        """Before a run: every worker's code (hash written at sync) and environment (hash written
        at setup) are checked; missing or stale ones are synced and set up again. A re-created
        VM or a slice that Cloud TPU replaced has neither. Setup after sync: it installs the
        synced tree (editable)."""
        _, out = self.call(self.check(), capture=True)
        seen = [line.split()[1:3] for line in out.splitlines() if line.startswith("alignjax-check ")]
        workers = self.acc.hosts * self.a.num_slices
        complete = len(seen) >= workers and not self.a.dry_run  # a worker that printed nothing: redo all
        if not (complete and all(c == self.code_hash() for c, _ in seen)):
            self.record("syncing", workers=workers, current=sum(c == self.code_hash() for c, _ in seen))
            self.do_sync()
        if not (complete and all(v == self.setup_hash() for _, v in seen)):
            self.record("setting_up", workers=workers, current=sum(v == self.setup_hash() for _, v in seen))
            self.call(self.setup())

    def do_requeue(self) -> int:
        """Watch the run: after a preemption re-create the resource (waiting out capacity
        errors), then, as for a slice Cloud TPU replaced, sync and set up the workers that lack
        the code or environment, and start the same command, which resumes from the workdir's
        latest checkpoint. Stops when the trainer exits (0: finished; otherwise its status, a bug
        or bad input is not retried)."""
        self.restarts = self.resume_count()
        self.record("watching")
        stopped = 0
        while True:
            st = self.state()
            if self.a.dry_run:  # show the recovery path: a preempted resource
                st = "SUSPENDED" if self.queued else "PREEMPTED"
            if st in READY:
                _, out = self.retry("status", lambda: self.call(self.remote_status(), capture=True))
                status = self.summarize(out)
                if status == "rc=preempted":  # SIGTERM'd and saved; usually the VM goes away next
                    stopped += 1
                    if stopped < 3:
                        self.sleep(self.a.poll_s)
                        continue
                    status = "idle"  # the VM stayed: resume on it
                stopped = 0
                if status.startswith("rc="):
                    rc = int(status[3:]) if status[3:].isdigit() else 1
                    self.record("finished" if rc == 0 else "failed", rc=rc)
                    print(f"alignjax-launch: {self.a.name}: alignjax-train exited with {rc}", flush=True)
                    return rc
                if status == "idle":  # fresh (re-created or repaired) workers, or nothing started yet
                    self.retry("prepare", self.prepare)
                    self.retry("run", lambda: self.call(self.run()))
                    self.record("running")
                self.call(self.logs(), check=False)  # returns when the trainer ends or the VM goes away
                if self.a.dry_run:
                    return 0
                continue
            if st in PREEMPTED or not st:
                if self.restarts >= self.a.max_restarts:
                    self.record("gave_up", error=f"state {st or 'missing'}")
                    raise LaunchError(f"{self.a.name}: state {st or 'missing'} after {self.restarts} restarts; giving up")
                self.restarts, stopped = self.restarts + 1, 0
                self.record("recreating", was=st or "missing")
                print(f"alignjax-launch: {self.a.name}: {st or 'missing'}; recreating (restart {self.restarts})",
                      flush=True)
                self.retry("re-create", self.recreate)
                if self.a.dry_run:  # the watch loop would now find idle workers
                    self.prepare()
                    self.call(self.run())
                    self.call(self.logs())
                    return 0
                continue
            self.sleep(self.a.poll_s)  # CREATING, WAITING_FOR_RESOURCES, ..., or a gcloud hiccup (UNKNOWN)


def _parser() -> Parser:
    p = Parser(prog="alignjax-launch", description=__doc__.split("\n\n")[0],
               usage="alignjax-launch {create,setup,sync,run,logs,status,requeue,delete,up} --name=... "
                     "--zone=... --accelerator=... [flags] [-- alignjax-train args]")
    p.add_argument("command", choices=["create", "setup", "sync", "run", "logs", "status", "requeue", "delete", "up"])
    p.add_argument("--name", required=True, help="TPU VM name / queued resource id (node prefix for multislice)")
    p.add_argument("--zone", required=True)
    p.add_argument("--accelerator", required=True, help="v4-8, v5p-128, v5litepod-256 (v5e-256), v6e-64, ...")
    p.add_argument("--project", default=None)
    p.add_argument("--spot", action="store_true", help="Spot capacity (preemptible at any time)")
    p.add_argument("--preemptible", action="store_true", help="preemptible TPU VM (not for queued resources)")
    p.add_argument("--queued", action="store_true", help="request through a queued resource (waits for capacity)")
    p.add_argument("--num_slices", type=int, default=1, help="multislice: N slices over DCN (implies --queued)")
    p.add_argument("--runtime_version", default=None, help="TPU VM image (default per generation)")
    p.add_argument("--workdir", default=None, help="the run directory, gs://bucket/path (passed to alignjax-train)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment for alignjax-train")
    p.add_argument("--python", default="3.11", help="Python version of the workers' venv")
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]), help="local code to sync")
    p.add_argument("--worker", default="0", help="logs: worker index or 'all'")
    p.add_argument("--lines", type=int, default=100, help="logs of non-zero/all workers: last N lines")
    p.add_argument("--max_restarts", type=int, default=100, help="requeue: recreations before giving up")
    p.add_argument("--max_retries", type=int, default=30, help="requeue: retries of one failing step (re-create, ...)")
    p.add_argument("--backoff_s", type=float, default=30.0, help="requeue: first retry's wait (doubles each retry)")
    p.add_argument("--max_backoff_s", type=float, default=1800.0, help="requeue: longest wait between retries")
    p.add_argument("--poll_s", type=float, default=60.0, help="requeue/create: seconds between state checks")
    p.add_argument("--no_follow", action="store_true", help="run: start and return without following the log")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="print the commands only")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, train_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = _parser().parse_args(own)
    for e in args.env:
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*=", e):
            cli_error("alignjax-launch", f"--env={e}: expected KEY=VALUE (KEY a shell variable name)")
    try:
        launcher = Launcher(args, train_args)
        c = args.command
        if c == "create":
            launcher.do_create()
        elif c == "setup":
            launcher.call(launcher.setup())
        elif c == "sync":
            launcher.do_sync()
        elif c == "run":
            launcher.call(launcher.run())
            if not args.no_follow:
                return launcher.call(launcher.logs(), check=False)[0]
        elif c == "logs":
            return launcher.call(launcher.logs(), check=False)[0]
        elif c == "status":
            st = launcher.state()
            print(f"{args.name}: {st or ('(dry run)' if args.dry_run else 'missing')}", flush=True)
            if st in READY or args.dry_run:
                launcher.call(launcher.remote_status())  # one line per worker
        elif c == "delete":
            launcher.call(launcher.delete())
        elif c == "requeue":
            return launcher.do_requeue()
        elif c == "up":  # requeue finds the new workers idle: it syncs, sets up and starts them
            launcher.retry("create", launcher.do_create)
            if args.dry_run:
                launcher.prepare()
                launcher.call(launcher.run())
                return 0
            return launcher.do_requeue()
    except LaunchError as e:
        cli_error("alignjax-launch", str(e))
    except KeyboardInterrupt:
        print("alignjax-launch: interrupted; the run keeps going on the TPU (see `logs`, `requeue`, `delete`)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
