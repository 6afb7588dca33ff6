"""A run folder's metrics.csv (one row per evaluation): its writer and its one reader.

`read_metrics` is the one reader of metrics.csv in the project (resume, summary.json, `grok
cds`, `grok phase`, `grok fourier`, `grok pathways`): every caller sees the same rows, a torn
last row dropped the same way; `first_step_reaching` the one finder of the step a curve
reaches a threshold.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grok_cli.errors import GrokError
from grok_cli.io import atomic_write

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
        self.rows: list[dict[str, Any]] = []  # the rows in the file

    def kept_rows(self, keep_before_step: int | None, expected: dict[str, Any] | None = None
                  ) -> list[dict[str, Any]]:
        """The rows a resume keeps (those before `keep_before_step`), checked: GrokError when
        the file is damaged, has other columns than this run writes (rewriting it would lose
        them), or does not hold the rows the checkpoint recorded (`expected`: record_before)."""
        if not keep_before_step or not self.path.exists():
            rows = []
        else:
            rows = read_metrics(self.path)
            header = list(rows[0]) if rows else _header(self.path)
            if header != self.columns:
                missing = [c for c in self.columns if c not in header]
                extra = [c for c in header if c not in self.columns]
                raise GrokError(f"{self.path} has other columns than this run writes (missing: "
                                f"{', '.join(missing) or 'none'}; not this run's: "
                                f"{', '.join(extra) or 'none'}; or another order): it was edited "
                                "or belongs to another run; restore it, or resume=false to "
                                "start over")
            rows = [row for row in rows if row["step"] < keep_before_step]
        if expected is not None and len(rows) != expected["rows"]:
            raise GrokError(f"{self.path} holds {len(rows)} rows before step {keep_before_step}, "
                            f"the checkpoint was taken after {expected['rows']}: it was cut, "
                            "deleted or replaced; restore it, or resume=false to start over")
        if expected is not None and self._digest(rows) != expected["sha256"]:
            raise GrokError(f"{self.path}: its rows before step {keep_before_step} are not those "
                            "the checkpoint was taken after (values differ): it was edited or "
                            "is another run's; restore it, or resume=false to start over")
        return rows

    def start(self, rows: list[dict[str, Any]]) -> None:
        """Start the file with `rows` (kept_rows on resume, else none)."""
        with atomic_write(self.path, newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.rows = list(rows)

    def append(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)
        self.rows.append(row)

    def record_before(self, step: int) -> dict[str, Any]:
        """What a checkpoint at `step` records of the rows before it, so that a resume can tell
        they are still those: their number and a digest of their values."""
        rows = [row for row in self.rows if row["step"] < step]
        return {"rows": len(rows), "sha256": self._digest(rows)}

    def _digest(self, rows: list[dict[str, Any]]) -> str:
        # Values as read back from the file (a float's text gives the same float back).
        values = [[int(row[c]) if c == "step" else float(row[c]) for c in self.columns]
                  for row in rows]
        return hashlib.sha256(json.dumps(values, allow_nan=True).encode()).hexdigest()


# What a run writes: lr and elapsed_s are always finite; accuracies are within [0, 1]; the
# losses, the L2 norm and the accuracies may be non-finite (missing) only in the last row (the
# one that ended a diverged run); a per-group accuracy is NaN where the group has no samples.
FINITE = ("lr", "elapsed_s")
LAST_ROW_MAY_MISS = ("train_loss", "test_loss", "l2_norm", "train_acc", "test_acc")


def _header(path: Path) -> list[str]:
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows by step: `step` an int, every other column a float (empty: NaN).

    What it reads is checked, so no number derived from it is silently wrong: the header (a
    `step` column, no name twice), every value (accuracies finite and within [0, 1], lr and
    elapsed_s finite, non-finite losses only in a last row), and the steps. Rows out of step
    order, or a row written twice, are read sorted and once, with a warning (the file is left
    as it is); two different rows of one step are a GrokError. A kill during an append can
    leave the last line cut short: it is dropped with a warning; a damaged row anywhere else
    is a GrokError.
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM by an editor
        lines = handle.read().splitlines(keepends=True)
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    if "step" not in header or len(set(header)) < len(header) or "" in header:
        raise GrokError(f"{path} is not a metrics file: its header needs a 'step' column and "
                        "distinct names; restore it, or delete it (and checkpoints/) to start "
                        "the run over")
    rows: dict[int, dict[str, Any]] = {}
    repaired, top = 0, -1
    for raw in reader:
        row = _parse_row(raw)
        last = reader.line_num == len(lines)
        if row is None or (last and not lines[-1].endswith(("\n", "\r"))):
            if not last:
                raise GrokError(f"{path}: line {reader.line_num} is damaged; only the last line "
                                "may be cut short (by a kill): repair or delete the file")
            log.warning("%s: dropped its incomplete last row (line %d, cut short by a kill "
                        "during an append)", path, reader.line_num)
            continue
        step = row["step"]
        if step in rows and not _same(rows[step], row):
            raise GrokError(f"{path}: step {step} has two different rows (line "
                            f"{reader.line_num}); it was edited or merged from two runs: "
                            "repair or delete the file")
        repaired += step <= top
        rows[step], top = row, max(top, step)
    if repaired:
        log.warning("%s: %d row(s) out of step order or written twice; read by step, each "
                    "once", path, repaired)
    ordered = [rows[step] for step in sorted(rows)]
    _check_values(path, ordered)
    return ordered


def _parse_row(raw: dict[str | None, Any]) -> dict[str, Any] | None:
    """The row with numbers, or None when fields are missing, extra or not numbers."""
    if None in raw or any(value is None for value in raw.values()):
        return None  # fewer fields (None values) or more fields (a None key) than the header
    try:
        return {key: int(value) if key == "step" else float(value) if value else math.nan
                for key, value in raw.items()}
    except ValueError:
        return None


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in
               zip(a.values(), b.values(), strict=True))


def _check_values(path: Path, rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(rows):
        for key, value in row.items():
            finite = math.isfinite(value)
            accuracy = key in ("train_acc", "test_acc") or key.startswith(("train_acc/",
                                                                           "test_acc/"))
            if ((key == "step" and value < 0) or (key in FINITE and not finite)
                    or (accuracy and finite and not 0 <= value <= 1)
                    or (accuracy and math.isinf(value))
                    or (key in LAST_ROW_MAY_MISS and not finite and i < len(rows) - 1)):
                raise GrokError(f"{path}: step {row['step']} has {key}={value}, which a run "
                                "never writes there; repair or delete the file")


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
