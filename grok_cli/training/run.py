"""`grok run`: train one experiment into a run folder (docs/design.md, run folder contract)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from grok_cli.config import validate_run_config
from grok_cli.errors import Fault, GrokError, as_fault, report_user_errors
from grok_cli.plots import plot_curves, setting_title
from grok_cli.runfolder import CURVES, METRICS, last_checkpoint
from grok_cli.runfolder.metrics import read_metrics
from grok_cli.runfolder.record import RunFolder
from grok_cli.runfolder.summary import has_summary, read_summary, summarize, write_summary
from grok_cli.training.checkpoint import load_checkpoint
from grok_cli.training.device import resolve_device
from grok_cli.training.signals import Interrupted, StopSignals, continue_command, signal_name
from grok_cli.training.trainer import Outcome, train

log = logging.getLogger("grok")

EXIT_FAILED, EXIT_DIVERGED = 1, 3


@report_user_errors
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    # In a multirun one failed job must not stop the others: its summary.json records it.
    isolate = hydra_cfg.mode == RunMode.MULTIRUN
    status = run_experiment(cfg, Path(hydra_cfg.runtime.output_dir), isolate_failures=isolate)
    if status != "completed" and not isolate:
        raise SystemExit(EXIT_DIVERGED if status == "diverged" else EXIT_FAILED)


def run_experiment(cfg: DictConfig, run_dir: Path, isolate_failures: bool = False) -> str:
    """Train and write the run folder; returns the status it wrote to summary.json.

    With `isolate_failures`, an error is logged and recorded instead of raised. A SIGINT or
    SIGTERM stops the run with a checkpoint and raises `Interrupted` (exit 130 / 143).
    """
    stop = StopSignals()
    try:
        _check_place(RunFolder(run_dir))
        with stop.installed(), RunFolder(run_dir).claimed() as folder:
            return _run_claimed(cfg, folder, stop, isolate_failures)
    except GrokError as err:  # in a multirun only the lock's refusal gets here
        if not isolate_failures:
            raise
        log.error("error: %s", err)
        return "failed"


def _check_place(folder: RunFolder) -> None:
    try:
        folder.check_place()
    except GrokError:
        folder.discard_if_new()  # the log Hydra began there
        raise


def _run_claimed(cfg: DictConfig, folder: RunFolder, stop: StopSignals, isolate: bool) -> str:
    run_dir = folder.path
    try:
        validate_run_config(cfg)
        if cfg.resume and _already_completed(run_dir, cfg):
            log.info("run already completed: %s", run_dir)
            return "completed"
        resolve_device(cfg.device)  # refused here, in one line, when it is not there
        outcome = train(cfg, run_dir, stop)
    except (Exception, Interrupted) as caught:
        err = as_fault(caught, run_dir)
        with contextlib.suppress(OSError):  # a full disk may not hold the failed summary
            record_failure(cfg, folder, err, keep_new_folder=isolate)
        if isinstance(err, Interrupted):
            print(f"{_message(err)}; to continue: {continue_command()}", file=sys.stderr)
            raise
        if err is caught and not isolate:
            raise
        if not isolate:
            raise err from None
        log.error("error: %s", _message(err), exc_info=not isinstance(err, GrokError | Fault))
        return "failed"
    with stop.deferring():  # a signal now does not cut the closing files short
        try:
            finish(outcome, cfg, run_dir)
        except OSError as caught:  # a full disk at the very end: still one line
            raise as_fault(caught, run_dir) from None
    if outcome.status == "interrupted":
        stop_interrupted(outcome)
    return outcome.status


def finish(outcome: Outcome, cfg: DictConfig, run_dir: Path, **extra: Any) -> None:
    """Close a trained run (or batched member): summary.json, curves.png, a log line."""
    summary = finish_run(run_dir, cfg, status=outcome.status, error=outcome.error,
                         n_train=len(outcome.task.train), n_test=len(outcome.task.test),
                         device=outcome.device, label_names=outcome.task.label_names,
                         **outcome.extra, **extra)
    if outcome.status == "diverged":
        log.error("error: run diverged: %s", outcome.error)
    elif outcome.status == "completed":
        log.info("done in %.1f s (%.1f steps/s): memorization step %s, generalization step %s, "
                 "final test_acc %.4f\n%s", summary["wall_s"], summary["steps_per_s"] or 0,
                 summary["memorization_step"], summary["generalization_step"],
                 summary["final"]["test_acc"], run_dir)


def stop_interrupted(outcome: Outcome) -> None:
    """After an interrupted run's closing files: one line on how to continue, and the exit."""
    print(f"{outcome.error} (checkpoint saved); to continue: {continue_command()}",
          file=sys.stderr)
    raise Interrupted(outcome.signum)


def _message(err: BaseException) -> str:
    if isinstance(err, Interrupted):
        return f"interrupted by {signal_name(err.signum)}"
    return str(err) if isinstance(err, GrokError | Fault) else f"{type(err).__name__}: {err}"


def record_failure(cfg: DictConfig, folder: RunFolder, err: BaseException,
                   keep_new_folder: bool) -> None:
    """What a failed or refused run leaves: nothing in a folder this command made for it (a
    `grok run` typo), else a summary.json saying why, unless one is there already: that means
    training never restarted (the trainer removes it when it does) and it describes earlier,
    finished work, which a mistake must not erase. The folder's .hydra/ record is never
    replaced; a folder without one gets this command's (a sweep counts jobs by it)."""
    if not keep_new_folder and folder.discard_if_new():
        return
    if has_summary(folder.path):
        return
    if not folder.has_record:
        folder.write_record(cfg)
    status = "interrupted" if isinstance(err, Interrupted) else "failed"
    finish_run(folder.path, cfg, status=status, error=_message(err))


def _already_completed(run_dir: Path, cfg: DictConfig) -> bool:
    """A completed run of this very config (a different one is refused, not skipped)."""
    ckpt_path = last_checkpoint(run_dir)
    if not ckpt_path.exists():
        return False
    try:
        summary = read_summary(run_dir)
    except GrokError as err:  # the checkpoint rewrites it: its last step is evaluated again
        log.warning("%s; it is rewritten from %s", err, ckpt_path)
        return False
    if summary is None or summary.get("status") != "completed":
        return False
    load_checkpoint(ckpt_path, cfg)  # raises when the folder holds another config's run
    return summary.get("steps") == cfg.steps


def finish_run(run_dir: Path, cfg: DictConfig, status: str, error: str | None,
               **extra: Any) -> dict[str, Any]:
    """Write summary.json (and curves.png) from the folder's metrics.csv: the run folder's
    closing files, for batched members too."""
    metrics_path = run_dir / METRICS
    rows = read_metrics(metrics_path) if metrics_path.exists() else []
    extra = {"n_train": None, "n_test": None, "device": None, "label_names": None, **extra}
    summary = summarize(rows, cfg.thresholds, status=status, steps=cfg.steps, error=error,
                        **extra)
    if rows:
        marks = {f"memorized (train_acc ≥ {cfg.thresholds.memorize})":
                 summary["memorization_step"],
                 f"generalized (test_acc ≥ {cfg.thresholds.generalize})":
                 summary["generalization_step"]}
        try:
            plot_curves(rows, run_dir / CURVES, setting_title(cfg, summary["n_train"]),
                        marks)
        except OSError as err:  # a failure's summary matters more than its plot (full disk)
            if status == "completed":
                raise
            log.warning("curves.png not written: %s", err)
    write_summary(run_dir, summary)
    return summary
