"""Shared helpers: run the real `grok` CLI in a subprocess, compose configs in-process."""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tiny but real: a 1-layer, 32-wide transformer on a p = 23 modular task, a few steps.
TINY = ["task.p=23", "task.train_split=0.75", "data_fraction=0.5", "model.hidden_size=32",
        "model.num_heads=2", "steps=40", "eval_every=10", "ckpt_every=20", "progress=log"]


def grok_env() -> dict[str, str]:
    # One thread: the same float summation order in every process, and two tests can share
    # the 2 cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def grok_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "grok_cli.cli", *args]


def grok(*args: str, cwd: Path, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(grok_command(*args), cwd=cwd, env=grok_env(), capture_output=True,
                            text=True, timeout=300, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"grok {' '.join(args)} failed:\n{result.stderr}")
    return result


def grok_here(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    """`grok ARGS` as `grok()` runs it, but in this process (cli.main, what the console script
    calls): the same exit code, stdout and stderr, without a new interpreter's ~5 s of imports.
    Tests of what only a real process shows (signals, locks, imports) use `grok()`."""
    import io

    from grok_cli import cli

    out, err = io.StringIO(), io.StringIO()
    with (pytest.MonkeyPatch.context() as mp, logging_restored(), torch_defaults(),
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        mp.chdir(cwd)
        mp.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites sys.argv for Hydra
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("HYDRA_FULL_ERROR", raising=False)
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
    result = subprocess.CompletedProcess(["grok", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"grok {' '.join(args)} failed:\n{result.stderr}")
    return result


@contextlib.contextmanager
def torch_defaults() -> Iterator[None]:
    """One thread, as the CLI's (grok_env): two threads on a busy 2-core machine made in-process
    runs 3-10x slower, and one thread sums in one order. Threads and default dtype come back,
    and subnormal floats (a run with flush_denormal=true flushes them for the process)."""
    import torch

    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.set_flush_denormal(False)


@pytest.fixture(autouse=True)
def one_thread():
    with torch_defaults():
        yield


def _own_handlers(logger: logging.Logger) -> list[logging.Handler]:
    # pytest adds and removes its capture handlers around each phase itself
    return [h for h in logger.handlers if not type(h).__module__.startswith("_pytest")]


def _loggers() -> list[logging.Logger]:
    return [logging.root, *(logger for logger in logging.Logger.manager.loggerDict.values()
                            if isinstance(logger, logging.Logger))]


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """An in-process `grok` run configures logging as Hydra's job_logging says: a console handler
    on that test's (captured, later closed) stderr and a file handler on its run.log. Left in
    place, every later test would log into that run.log; this puts logging back as it was."""
    saved = {logger: (_own_handlers(logger), logger.level, logger.propagate, logger.disabled)
             for logger in _loggers()}
    try:
        yield
    finally:
        for logger in _loggers():
            handlers, level, propagate, disabled = saved.get(logger,
                                                             ([], logging.NOTSET, True, False))
            for handler in _own_handlers(logger):
                if handler not in handlers:
                    logger.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture(autouse=True)
def restore_logging():
    with logging_restored():
        yield


@pytest.fixture(autouse=True)
def fresh_hub_probe():
    """hub_reachable caches its answer for the process; a test that changes HF_HUB_OFFLINE or
    HF_ENDPOINT needs a fresh probe, and must not leave its answer to the next test."""
    hub = sys.modules.get("grok_cli.hub")  # not imported yet: nothing cached
    if hub:
        hub.hub_reachable.cache_clear()
    yield
    if hub := sys.modules.get("grok_cli.hub"):
        hub.hub_reachable.cache_clear()


def grok_in_process(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int | str:
    """`grok ARGS` in this process (cli.main, as the console script calls it) from folder `cwd`;
    returns the exit code. It saves a subprocess's interpreter start and torch import."""
    from grok_cli import cli

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites sys.argv for Hydra
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(args))
        raise SystemExit(0)
    return exit_info.value.code


@pytest.fixture
def grok_main(monkeypatch: pytest.MonkeyPatch):
    """grok_in_process for one test: grok_main(args, cwd) -> exit code."""
    return lambda args, cwd: grok_in_process(args, cwd, monkeypatch)


@pytest.fixture
def run_cfg():
    """Compose the `grok run` config in-process with overrides (no Hydra run folder)."""
    from hydra import compose, initialize_config_dir

    from grok_cli.cli import conf_dir

    def compose_run(*overrides: str):
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            return compose(config_name="run", overrides=list(overrides))

    return compose_run


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV the commands write (metrics.csv, summary.csv, an analysis table), as text rows."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def wait_for_step(run, step, proc):
    """Until a real `grok run` process has written the metrics row of `step`."""
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        rows = read_rows(run / "metrics.csv") if (run / "metrics.csv").exists() else []
        if rows and int(rows[-1]["step"]) >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run never reached step {step}")
