"""SIGINT (Ctrl-C) and SIGTERM (what SLURM sends before a preemption or a time limit).

During training a signal is only noted, and the loop stops at its next step boundary with a
checkpoint there, so the same command continues exactly. Before training (building the task,
say) it stops the command at once. Either way the command exits 128 + the signal's number
(130, 143) through `Interrupted`, which a sweep may catch to write its table first.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# SLURM's time-limit / preemption signal under submitit (`--signal=USR2@...`): handled like
# SIGTERM when a handler (submitit's requeue) is installed, which then requeues the job.
REQUEUE_SIGNAL = signal.SIGUSR2
# Set by launcher=slurm in the job script: the `grok sweep` command that continues the sweep.
CONTINUE_ENV = "GROK_CONTINUE_COMMAND"


class Interrupted(SystemExit):
    """The command stops after a signal: exit status 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """SIGINT and SIGTERM while installed: noted (`signum`) while `deferring`, else raised;
    a second one is raised in any case."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False

    def _handle(self, signum: int, frame: object) -> None:
        again, self.signum = self.signum is not None, signum
        if again or not self.deferred:  # a second Ctrl-C stops at once (last.pt stays whole)
            raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # Python delivers signals to the main thread only
            return
        # An ignored signal stays ignored: a job a script starts in the background (`cmd &`)
        # has SIGINT ignored, so that a Ctrl-C in the terminal stops the script, not the job.
        requeue = (REQUEUE_SIGNAL,) if callable(signal.getsignal(REQUEUE_SIGNAL)) else ()
        previous = {signum: signal.signal(signum, self._handle) for signum in (*SIGNALS, *requeue)
                    if signal.getsignal(signum) is not signal.SIG_IGN}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        self.deferred = True
        try:
            yield
        finally:
            self.deferred = False


def continue_command() -> str:
    """The command that continues this one: the same arguments, into the same folder."""
    if os.environ.get(CONTINUE_ENV):  # a SLURM job: sys.argv is submitit's worker
        return os.environ[CONTINUE_ENV]
    if not HydraConfig.initialized():
        return "the same call into the same run folder"
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        key, folder = "hydra.sweep.dir", hydra_cfg.sweep.dir
    else:
        key, folder = "hydra.run.dir", hydra_cfg.runtime.output_dir
    args = [arg for arg in sys.argv[1:] if not arg.startswith(f"{key}=")]
    return shlex.join([*sys.argv[0].split(), *args,
                       f"{key}={hydra_quoted(os.path.abspath(folder))}"])


def hydra_quoted(value: str) -> str:
    """`value` as one quoted string of Hydra's override grammar, so that a folder name holding
    spaces, `=`, `,` or brackets (every sweep job's does) reads back as itself: quotes escaped,
    and backslashes doubled where they precede a quote or the closing one. A plain path (only
    characters the grammar reads as themselves) stays unquoted."""
    if re.fullmatch(r"[A-Za-z0-9_/.:+@%-]+", value):
        return value
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)
    return "'" + value.replace("'", "\\'") + "'"
