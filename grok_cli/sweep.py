"""`grok sweep`: a Hydra multirun of `grok run` over a grid, with one summary table.

Each job is a `grok run` into its own folder under the sweep folder, named by its overrides
(conf/sweep.yaml), so re-running a sweep into the same folder skips finished jobs and resumes
interrupted ones. A failed job is recorded in its summary.json and never stops the others.
After the last job, `SweepSummary` rebuilds summary.csv from the job folders (files only, so
it is right for jobs that ran on a cluster too) and exits non-zero when any job failed.
"""

from __future__ import annotations

import csv
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
from grok_cli.io import atomic_write, read_yaml, write_json, write_text
from grok_cli.training.records import read_summary

log = logging.getLogger("grok")

SUMMARY_CSV = "summary.csv"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
EXIT_JOBS_FAILED = 1
MAX_DIRNAME = 200  # file systems allow 255 bytes per name; leave room for ".tmp" suffixes
# summary.json fields copied into summary.csv, in this order (final_* come from `final`).
SUMMARY_FIELDS = ("n_train", "n_test", "steps", "memorization_step", "generalization_step",
                  "best_test_acc", "converged_test_acc", "final_step", "final_train_acc",
                  "final_test_acc", "final_train_loss", "final_test_loss", "wall_s",
                  "steps_per_s", "device")


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


def record_lost_job(job_dir: Path, overrides: list[str], status: str, error: str) -> None:
    """A job that ended without a result (SLURM's scancel, a node failure, out of memory): its
    summary.json says so (`status` cancelled / failed), keeping what the job wrote itself (its
    steps, when it stopped at a checkpoint), so summary.csv shows it and a re-run continues it.
    A job cancelled before it started gets its folder's .hydra/overrides.yaml, which counts it."""
    summary_path = job_dir / "summary.json"
    try:
        summary = read_summary(summary_path) if summary_path.exists() else {}
    except GrokError:  # a torn or damaged summary: the job's own record is lost anyway
        summary = {}
    if summary.get("status") == "completed":
        return
    if summary.get("error"):
        error = f"{error} ({summary['error']})"
    if not (job_dir / OVERRIDES_FILE).exists():
        (job_dir / OVERRIDES_FILE).parent.mkdir(parents=True, exist_ok=True)
        write_text(job_dir / OVERRIDES_FILE, OmegaConf.to_yaml(OmegaConf.create(overrides)))
    write_json(summary_path, {**summary, "status": status, "error": error})


# ---------------------------------------------------------------- summary.csv


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job folder under the sweep folder: those holding Hydra's .hydra/overrides.yaml.

    Not only those with a metrics.csv: a job that failed before training still counts. A
    folder inside a job (`grok pathways ... hydra.run.dir=JOB/pathways`) is that job's, not
    one of its own.
    """
    found = sorted(path.parent.parent for path in Path(sweep_dir).rglob(str(OVERRIDES_FILE)))
    jobs = set(found)
    return [job for job in found if jobs.isdisjoint(job.parents)]


def read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / OVERRIDES_FILE
    advice = "restore it, or delete the job folder and run the sweep again"
    overrides = read_yaml(path, advice)
    if overrides and not OmegaConf.is_list(overrides):
        raise GrokError(f"{path} is damaged (not a list of overrides); {advice}")
    return [str(item) for item in overrides] if overrides else []


def override_values(overrides: list[str]) -> dict[str, Any]:
    """{key: value} of a job's overrides, parsed by Hydra's own override grammar."""
    parser = OverridesParser.create()
    values: dict[str, Any] = {}
    for override in parser.parse_overrides(overrides):
        value = override.value() if override.value_type is not None else None
        values[override.key_or_group] = value
    return values


def job_row(sweep_dir: Path, job_dir: Path) -> dict[str, Any]:
    """One row of summary.csv: the job's folder, overrides, status and summary metrics."""
    from grok_cli.analysis.runs import Run

    run = Run.load(job_dir)
    overrides = read_overrides(job_dir)
    summary = run.summary or {}
    final = summary.get("final") or {}
    metrics = {key: summary.get(key) for key in SUMMARY_FIELDS if not key.startswith("final_")}
    metrics.update({f"final_{key}": final.get(key)
                    for key in ("step", "train_acc", "test_acc", "train_loss", "test_loss")})
    return {
        "job": str(job_dir.relative_to(sweep_dir)) if job_dir != sweep_dir else ".",
        "status": run.status,
        "overrides": " ".join(overrides),
        **override_values(overrides),
        **{key: metrics[key] for key in SUMMARY_FIELDS},
        "error": run.damage or (summary.get("error") if run.summary
                                else "no summary.json: unfinished or killed"),
    }


def write_sweep_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """Rebuild summary.csv of a sweep folder from its job folders; returns its rows."""
    if (sweep_dir / OVERRIDES_FILE).exists() and any(sweep_dir.glob(f"*/{OVERRIDES_FILE}")):
        # A run trained in the sweep's folder itself: its jobs would drop out of the table.
        raise GrokError(f"{sweep_dir} holds a run of its own ({OVERRIDES_FILE}) beside its job "
                        "folders: a grok run was started in the sweep's folder; move that "
                        "run's files out")
    rows = [job_row(sweep_dir, job_dir) for job_dir in find_job_dirs(sweep_dir)]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_write(sweep_dir / SUMMARY_CSV, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return rows


@report_user_errors
def report_sweep(sweep_dir: Path) -> None:
    """Write summary.csv, say how the jobs went, exit non-zero when any did not complete."""
    if not sweep_dir.is_dir():
        raise GrokError(f"hydra.sweep.dir={str(sweep_dir)!r} is not an existing folder: "
                        "pass the folder of an earlier sweep")
    rows = write_sweep_summary(sweep_dir)
    failed = [row for row in rows if row["status"] != "completed"]
    log.info("%s: %d jobs, %d completed, %d failed", sweep_dir / SUMMARY_CSV, len(rows),
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


def check_sweep_place(sweep_dir: Path) -> None:
    """A sweep's folder is not a run's folder, nor inside one: the run would take the jobs'
    place in summary.csv (a folder holding .hydra/overrides.yaml counts as one job)."""
    for folder in (sweep_dir, *sweep_dir.parents):
        if (folder / "metrics.csv").exists() and (folder / OVERRIDES_FILE).exists():
            raise GrokError(f"hydra.sweep.dir={str(sweep_dir)!r} is not allowed: "
                            f"{'it is' if folder == sweep_dir else 'it lies inside'} the run "
                            f"folder {folder}; a sweep needs a folder of its own")


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
