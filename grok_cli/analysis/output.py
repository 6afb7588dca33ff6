"""What every analysis command shares: its output folder and the files it writes there.

An analysis command (`grok cds`, `phase`, `fourier`, `pathways`, and the next ones) takes its
settings (the composed conf/<name>.yaml) and folders in, and writes files out, each whole or not
at all (grok_cli.io), into one analysis folder: `out_dir`, else Hydra's output folder. A refused
command writes nothing: the CLI removes the folder it made (cli.Task). Run and sweep folders
are read through grok_cli.runfolder only.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from grok_cli.io import atomic_write, write_json

__all__ = ["output_dir", "threshold_column", "write_csv", "write_json", "write_png"]


def threshold_column(split: str, threshold: float) -> str:
    """The column of the first step a split's accuracy reaches `threshold` (train_step@0.9)."""
    return f"{split}_step@{threshold:g}"


def output_dir(cfg: DictConfig) -> Path:
    """The analysis folder, created: `out_dir` when the command has and sets it, else the
    folder Hydra made for this command (hydra.run.dir)."""
    if cfg.get("out_dir"):
        out = Path(cfg.out_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] | None = None
              ) -> None:
    """A table: `columns` (default: the first row's keys) in order, a missing value or None
    empty, keys outside `columns` left out."""
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns if columns is not None
                                                        else rows[0] if rows else []),
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_png(fig: Any, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure as a PNG, then closed (pyplot keeps every open figure)."""
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    plt.close(fig)
