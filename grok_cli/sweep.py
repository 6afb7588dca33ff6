"""`grok sweep`: a Hydra multirun of `grok run` over a grid, with one summary table.

Each job is a `grok run` into its own folder under the sweep folder, named by its overrides
(conf/sweep.yaml), so re-running a sweep into the same folder skips finished jobs and resumes
interrupted ones. A failed job is recorded in its summary.json and never stops the others.
After the last job, `SweepSummary` rebuilds summary.csv from the job folders (files only, so
it is right for jobs that ran on a cluster too) and exits non-zero when any job failed.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from grok_cli.errors import GrokError, report_user_errors, stops_on_error
from grok_cli.runfolder import SWEEP_SUMMARY
from grok_cli.runfolder.sweep import check_sweep_place, write_sweep_summary

log = logging.getLogger("grok")

EXIT_JOBS_FAILED = 1
MAX_DIRNAME = 200  # file systems allow 255 bytes per name; leave room for ".tmp" suffixes


def job_dirname(override_dirname: str) -> str:
    """A job's folder name from its overrides (`${hydra.job.override_dirname}`), always valid.

    The same overrides always give the same name, so a re-run finds the folder again. Slashes
    (path values) would nest folders, and very long names are cut and made unique with a hash.
    """
    name = override_dirname.replace("/", "_") or "defaults"
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return name.encode()[: MAX_DIRNAME - 13].decode(errors="ignore") + "-" + digest


# conf/sweep.yaml names job folders with it; registered on import, which also happens in the
# worker processes of launcher=local / launcher=slurm (they import this task function).
OmegaConf.register_new_resolver("grok_job_dirname", job_dirname, replace=True)


@report_user_errors
def main(cfg: DictConfig) -> str:
    """The Hydra task function of one sweep job: a `grok run` whose failure is only recorded."""
    from grok_cli.training.run import run_experiment  # torch: only when a job runs
    from grok_cli.training.signals import Interrupted

    hydra_cfg = HydraConfig.get()
    cfg.device = job_device(cfg.device, hydra_cfg.job.num)
    try:
        return run_experiment(cfg, Path(hydra_cfg.runtime.output_dir), isolate_failures=True)
    except Interrupted:
        # Ctrl-C / SIGTERM ends the whole sweep (the job has its checkpoint): the table still
        # shows what is done, and the same command continues.
        write_sweep_summary(Path(hydra_cfg.sweep.dir))
        raise


def job_device(device: str, job_num: int) -> str:
    """With device=auto and several visible GPUs, job N trains on cuda:(N mod GPUs).

    Parallel local jobs (launcher=local) are spread over the GPUs that way; a SLURM job sees only
    its own GPU(s), so it keeps `auto`.
    """
    import torch

    if device != "auto" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    return f"cuda:{job_num % torch.cuda.device_count()}"


# ---------------------------------------------------------------- summary.csv


@report_user_errors
def report_sweep(sweep_dir: Path) -> None:
    """Write summary.csv, say how the jobs went, exit non-zero when any did not complete."""
    if not sweep_dir.is_dir():
        raise GrokError(f"hydra.sweep.dir={str(sweep_dir)!r} is not an existing folder: "
                        "pass the folder of an earlier sweep")
    rows = write_sweep_summary(sweep_dir)
    failed = [row for row in rows if row["status"] != "completed"]
    log.info("%s: %d jobs, %d completed, %d failed", sweep_dir / SWEEP_SUMMARY, len(rows),
             len(rows) - len(failed), len(failed))
    if failed:
        names = "; ".join(f"{row['job']} ({row['status']}: {row['error']})" for row in failed)
        print(f"error: {len(failed)} of {len(rows)} jobs failed: {names}", file=sys.stderr)
        sys.exit(EXIT_JOBS_FAILED)


def check_grid_folders(config: DictConfig) -> None:
    """Refuse a grid over a key that stays out of the job folder names (exclude_keys): its jobs
    would differ only there, share one folder, and the second would take the first's results."""
    excluded = set(config.hydra.job.config.override_dirname.exclude_keys)
    params = config.hydra.sweeper.get("params") or {}
    grid = [*config.hydra.overrides.task, *(f"{key}={value}" for key, value in params.items())]
    for override in OverridesParser.create().parse_overrides(grid):
        if override.is_sweep_override() and override.key_or_group in excluded:
            raise GrokError(
                f"{override.input_line} is not allowed: {override.key_or_group} stays out of the "
                "job folder names (it should not change results), so these jobs would share one "
                "folder; give it one value per sweep, each with its own hydra.sweep.dir")


class SweepSummary(Callback):
    """Hydra callback (conf/sweep.yaml, hydra.callbacks): checks the grid before any job starts,
    writes summary.csv after the last one."""

    @stops_on_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # sweep.summarize_only: rebuild the table of an existing sweep and launch nothing.
        if OmegaConf.select(config, "sweep.summarize_only", default=False):
            report_sweep(Path(config.hydra.sweep.dir))
            sys.exit(0)
        check_grid_folders(config)
        check_sweep_place(Path(config.hydra.sweep.dir))

    @stops_on_error
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report_sweep(Path(config.hydra.sweep.dir))
