"""Run control for the training loop: signals (preemption, Ctrl-C), the run lock, and the stops
every process agrees on."""

from __future__ import annotations

import logging
import signal

import jax
import numpy as np
from jax.experimental import multihost_utils

from alignjax import rundir

log = logging.getLogger("alignjax")


def any_process(flag: bool) -> bool:
    """``flag`` OR-ed over all processes (one process: no collective, no device sync)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


class Preempted:
    """SIGTERM (a TPU preemption notice) or SIGINT (Ctrl-C) asks the loop to save at the next
    step and stop: exit 0 after SIGTERM (requeued), 130 after SIGINT. Installed first thing, so
    a signal during start-up stops the run before its first step, saving nothing. A second
    Ctrl-C stops at once."""

    def __init__(self):
        self.flag, self.signum = False, None
        self._old = {s: signal.signal(s, self._set) for s in (signal.SIGTERM, signal.SIGINT)}

    def _set(self, signum, _frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag, self.signum = True, self.signum or signum

    @property
    def name(self) -> str:  # a notice that came to another host is a preemption
        return signal.Signals(self.signum).name if self.signum else "SIGTERM"

    def agreed(self) -> bool:
        """The flag OR-ed over all processes, read once per step: hosts are preempted at different
        steps, and a save that only some of them enter would wait forever in its collectives."""
        return any_process(self.flag)  # read once: the signal may land anywhere in this iteration

    def restore(self):
        for s, old in self._old.items():
            signal.signal(s, old)


class NonFiniteLoss(RuntimeError):
    pass


def take_lock(run: rundir.RunDir) -> rundir.RunLock | None:
    """Process 0 holds the run's lock for the whole run; every process learns whether it got it
    (the others would otherwise wait in the first collective for a process 0 that left)."""
    lock, error = None, None
    if jax.process_index() == 0:
        try:
            lock = run.lock()
            lock.acquire()
        except rundir.LockError as e:
            lock, error = None, e
    if any_process(error is not None):
        raise error or rundir.LockError(f"{run.root}: process 0 could not take the run lock (see its log)")
    return lock


def stop_at_start_up(preempted: Preempted, run: rundir.RunDir) -> bool:
    """A signal before the first step stops the run, writing nothing; the line is the one the
    launcher and the study look for ("saved step": the step already on disk)."""
    if not preempted.agreed():
        return False
    log.warning("%s: saved step %d (stopped during start-up: nothing new to save), exiting", preempted.name,
                max(run.steps(), default=0))
    return True


def stopped(preempted: Preempted) -> dict:
    """What train gives back once a signal stopped it: SIGINT raises KeyboardInterrupt (exit 130)."""
    if preempted.signum == signal.SIGINT:
        raise KeyboardInterrupt
    return {}
