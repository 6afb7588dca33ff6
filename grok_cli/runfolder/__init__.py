"""The run folder and the sweep folder: every file name grok writes there, in one place.

A run folder (`grok run`, one job of `grok sweep`) holds:

    metrics.csv              one row per evaluation              runfolder.metrics
    summary.json             the run's outcome, written last     runfolder.summary
    curves.png               the accuracy and loss curves        (training.run.finish_run)
    .hydra/config.yaml       the config it was trained with      runfolder.record
    .hydra/overrides.yaml    its command-line overrides (a sweep counts jobs by it)
    .grok.lock, .grok.owner  the one writer's lock and its pid   runfolder.record
    checkpoints/last.pt      the checkpoint a resume continues   runfolder.checkpoints
    checkpoints/step_<N>.pt  (or step_<N>/) save_every snapshots runfolder.checkpoints

and a sweep folder its job folders and summary.csv (`runfolder.sweep`). Training and the
analyses both read and write these files through this package only; it imports neither.
This module is light (no torch, numpy or Hydra): path names and path helpers only.
"""

from __future__ import annotations

from pathlib import Path

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CURVES = "curves.png"
RECORD_DIR = ".hydra"
CONFIG = Path(RECORD_DIR) / "config.yaml"
OVERRIDES = Path(RECORD_DIR) / "overrides.yaml"
LOCK_FILE, OWNER_FILE = ".grok.lock", ".grok.owner"
CHECKPOINTS = "checkpoints"
LAST = Path(CHECKPOINTS) / "last.pt"
SWEEP_SUMMARY = "summary.csv"


def last_checkpoint(run_dir: Path) -> Path:
    """checkpoints/last.pt: the checkpoint a resume continues from."""
    return Path(run_dir) / LAST


def snapshot_path(run_dir: Path, step: int) -> Path:
    """checkpoints/step_<N>: a snapshot's name without its suffix (.pt, or a folder)."""
    return Path(run_dir) / CHECKPOINTS / f"step_{step}"


def snapshots(run_dir: Path) -> dict[int, Path]:
    """The run's step snapshots (files or folders) by step."""
    found = {}
    for path in (Path(run_dir) / CHECKPOINTS).glob("step_*"):
        number = path.name.removesuffix(".pt").removeprefix("step_")
        if number.isdigit():
            found[int(number)] = path
    return dict(sorted(found.items()))


def snapshot_files(run_dir: Path) -> list[str]:
    """The run's step snapshots, relative to the run folder, by step."""
    return [str(p.relative_to(run_dir)) for p in snapshots(run_dir).values()]


def holds_run(folder: Path) -> bool:
    """The folder holds a run: metrics.csv or checkpoints/."""
    return any((Path(folder) / name).exists() for name in (METRICS, CHECKPOINTS))
