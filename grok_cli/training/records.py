"""The run folder's records: metrics.csv (one row per evaluation) and summary.json.

`read_metrics` is the one reader of metrics.csv in the project (resume, summary.json, `grok
cds`, `grok phase`, `grok pathways`): every caller sees the same rows, a torn last row dropped
the same way; `first_step_reaching` the one finder of the step a curve reaches a threshold.
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grok_cli.errors import GrokError
from grok_cli.io import atomic_write, write_json

log = logging.getLogger("grok")

COLUMNS = ["step", "train_loss", "train_acc", "test_loss", "test_acc", "l2_norm", "lr",
           "elapsed_s"]


def metric_columns(groups: Sequence[str] | None = None) -> list[str]:
    """metrics.csv's header: COLUMNS, then per data group (task=modmix) its accuracies."""
    groups = groups or ()
    return [*COLUMNS, *(f"train_acc/{g}" for g in groups), *(f"test_acc/{g}" for g in groups)]


class MetricsLog:
    """Appends rows to metrics.csv, flushed at once so a killed run keeps every row."""

    def __init__(self, path: Path, columns: list[str] | None = None) -> None:
        self.path = path
        self.columns = columns or COLUMNS

    def start(self, keep_before_step: int | None) -> None:
        """Start a new file, or keep the rows before `keep_before_step` (on resume)."""
        rows = read_metrics(self.path) if keep_before_step and self.path.exists() else []
        with atomic_write(self.path, newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(row for row in rows if row["step"] < (keep_before_step or 0))

    def append(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows in file order: `step` an int, every other column a float (empty: NaN).

    A kill during an append can leave the last line cut short: a last line without its line
    end, or with missing or unreadable fields, is dropped with a warning. A damaged row
    anywhere else is a GrokError.
    """
    with Path(path).open(newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    reader = csv.DictReader(lines)
    if "step" not in (reader.fieldnames or []):
        raise GrokError(f"{path} is not a metrics file: its header has no 'step' column; "
                        "delete it (and checkpoints/) to start the run over")
    rows = []
    for raw in reader:
        row = _parse_row(raw)
        last = reader.line_num == len(lines)
        if row is not None and not (last and not lines[-1].endswith(("\n", "\r"))):
            rows.append(row)
        elif last:
            log.warning("%s: dropped its incomplete last row (line %d, cut short by a kill "
                        "during an append)", path, reader.line_num)
        else:
            raise GrokError(f"{path}: line {reader.line_num} is damaged; only the last line "
                            "may be cut short (by a kill): repair or delete the file")
    return rows


def _parse_row(raw: dict[str | None, Any]) -> dict[str, Any] | None:
    """The row with numbers, or None when fields are missing, extra or not numbers."""
    if None in raw or any(value is None for value in raw.values()):
        return None  # fewer fields (None values) or more fields (a None key) than the header
    try:
        return {key: int(value) if key == "step" else float(value) if value else math.nan
                for key, value in raw.items()}
    except ValueError:
        return None


def first_step_reaching(steps: Sequence[int], values: Sequence[float], threshold: float
                        ) -> int | None:
    """The first step whose value is >= threshold, compared exactly (a missing value, NaN,
    never reaches); None if none does.

    The one definition of "the step a curve first reaches a threshold": summary.json's
    memorization / generalization steps, `grok cds`'s step-wise analysis and `grok phase`'s
    phases all use it.
    """
    return next((int(step) for step, value in zip(steps, values, strict=True)
                 if value >= threshold), None)


def first_step(rows: list[dict[str, Any]], column: str, threshold: float) -> int | None:
    """first_step_reaching over metrics.csv rows (`read_metrics`), by one column."""
    return first_step_reaching([row["step"] for row in rows], [row[column] for row in rows],
                               threshold)


def converged_accuracy(acc: Sequence[float], tail_fraction: float = 0.1) -> float | None:
    """Mean accuracy over the last `tail_fraction` of the evaluations that have one (at least one).

    The one definition of `converged_test_acc`: summary.json and `grok cds` both use it. Missing
    values (NaN) are dropped before the tail is taken, so the tail is always made of real
    evaluations; None when no row has a value. The mean is exact, rounded once (statistics.mean
    sums the floats exactly): a tail that sits at 0.9 averages to 0.9, not 0.8999999999999999.
    """
    values = [float(a) for a in acc if math.isfinite(a)]
    if not values:
        return None
    return float(statistics.mean(values[-math.ceil(len(values) * tail_fraction):]))


def group_steps(rows: list[dict[str, Any]], thresholds: Any) -> dict[str, Any] | None:
    """Per data group (the train_acc/<group> columns): its memorization and generalization
    steps by the run's thresholds; None for a task without groups."""
    groups = [key.removeprefix("train_acc/") for key in (rows[0] if rows else ())
              if key.startswith("train_acc/")]
    return {group: {"memorization_step": first_step(rows, f"train_acc/{group}",
                                                    thresholds.memorize),
                    "generalization_step": first_step(rows, f"test_acc/{group}",
                                                      thresholds.generalize)}
            for group in groups} or None


def summarize(rows: list[dict[str, Any]], thresholds: Any, **extra: Any) -> dict[str, Any]:
    """The summary.json fields derived from the metrics rows (docs/design.md)."""
    elapsed = rows[-1]["elapsed_s"] if rows else 0.0
    return {
        "memorization_step": first_step(rows, "train_acc", thresholds.memorize),
        "generalization_step": first_step(rows, "test_acc", thresholds.generalize),
        "groups": group_steps(rows, thresholds),
        "final": rows[-1] if rows else None,
        "best_test_acc": max((row["test_acc"] for row in rows), default=None),
        "converged_test_acc": (converged_accuracy([r["test_acc"] for r in rows])
                               if rows else None),
        "wall_s": elapsed,
        "steps_per_s": rows[-1]["step"] / elapsed if rows and elapsed > 0 else None,
        **extra,
    }


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_json(path, summary)
