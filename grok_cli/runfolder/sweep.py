"""A sweep folder's files: its job folders (each holds .hydra/overrides.yaml, written by
Hydra or, for a job lost before it started, by `record_lost_job`) and summary.csv, rebuilt
from the job folders' files only, so it is right for jobs that ran on a cluster too."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from grok_cli.errors import GrokError
from grok_cli.io import atomic_write, read_yaml, write_text
from grok_cli.runfolder import METRICS, OVERRIDES, SWEEP_SUMMARY
from grok_cli.runfolder.runs import Run
from grok_cli.runfolder.summary import read_summary, write_summary

# summary.json fields copied into summary.csv, in this order (final_* come from `final`).
SUMMARY_FIELDS = ("n_train", "n_test", "steps", "memorization_step", "generalization_step",
                  "best_test_acc", "converged_test_acc", "final_step", "final_train_acc",
                  "final_test_acc", "final_train_loss", "final_test_loss", "wall_s",
                  "steps_per_s", "device")


def record_lost_job(job_dir: Path, overrides: list[str], status: str, error: str) -> None:
    """A job that ended without a result (SLURM's scancel, a node failure, out of memory): its
    summary.json says so (`status` cancelled / failed), keeping what the job wrote itself (its
    steps, when it stopped at a checkpoint), so summary.csv shows it and a re-run continues it.
    A job cancelled before it started gets its folder's .hydra/overrides.yaml, which counts it."""
    try:
        summary = read_summary(job_dir) or {}
    except GrokError:  # a torn or damaged summary: the job's own record is lost anyway
        summary = {}
    if summary.get("status") == "completed":
        return
    if summary.get("error"):
        error = f"{error} ({summary['error']})"
    if not (job_dir / OVERRIDES).exists():
        (job_dir / OVERRIDES).parent.mkdir(parents=True, exist_ok=True)
        write_text(job_dir / OVERRIDES, OmegaConf.to_yaml(OmegaConf.create(overrides)))
    write_summary(job_dir, {**summary, "status": status, "error": error})


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job folder under the sweep folder: those holding Hydra's .hydra/overrides.yaml.

    Not only those with a metrics.csv: a job that failed before training still counts. A
    folder inside a job (`grok pathways ... hydra.run.dir=JOB/pathways`) is that job's, not
    one of its own.
    """
    found = sorted(path.parent.parent for path in Path(sweep_dir).rglob(str(OVERRIDES)))
    jobs = set(found)
    return [job for job in found if jobs.isdisjoint(job.parents)]


def read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / OVERRIDES
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
    if (sweep_dir / OVERRIDES).exists() and any(sweep_dir.glob(f"*/{OVERRIDES}")):
        # A run trained in the sweep's folder itself: its jobs would drop out of the table.
        raise GrokError(f"{sweep_dir} holds a run of its own ({OVERRIDES}) beside its job "
                        "folders: a grok run was started in the sweep's folder; move that "
                        "run's files out")
    rows = [job_row(sweep_dir, job_dir) for job_dir in find_job_dirs(sweep_dir)]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_write(sweep_dir / SWEEP_SUMMARY, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return rows


def check_sweep_place(sweep_dir: Path) -> None:
    """A sweep's folder is not a run's folder, nor inside one: the run would take the jobs'
    place in summary.csv (a folder holding .hydra/overrides.yaml counts as one job)."""
    for folder in (sweep_dir, *sweep_dir.parents):
        if (folder / METRICS).exists() and (folder / OVERRIDES).exists():
            raise GrokError(f"hydra.sweep.dir={str(sweep_dir)!r} is not allowed: "
                            f"{'it is' if folder == sweep_dir else 'it lies inside'} the run "
                            f"folder {folder}; a sweep needs a folder of its own")
