"""Reading finished run folders (metrics.csv, summary.json, .hydra/config.yaml) as a whole.

Analysis commands read files only, so they work on runs copied back from a cluster or made by
an older version: every field except metrics.csv is optional and missing ones become None. A
file that is there but damaged (invalid YAML or JSON) is not taken as missing: the run is
`damaged`, with the reason, and each command refuses or skips it by its own rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from grok_cli.errors import GrokError
from grok_cli.runfolder import CONFIG, METRICS
from grok_cli.runfolder.metrics import read_metrics
from grok_cli.runfolder.record import read_record
from grok_cli.runfolder.summary import default_thresholds, read_summary

REQUIRED_COLUMNS = ("step", "train_acc", "test_acc")


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every folder holding a metrics.csv, at any depth under each root (a root may be a run)."""
    found: dict[Path, None] = {}  # a dict keeps the order and drops overlaps between roots
    for root in roots:
        for metrics in sorted(Path(root).rglob(METRICS)):
            if metrics.is_file():
                found.setdefault(metrics.parent.resolve(), None)
    return list(found)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's Hydra config as plain dicts; {} when the run has none; GrokError naming the
    file when it is damaged."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    conf = read_record(path)
    try:
        return OmegaConf.to_container(conf, resolve=True)  # type: ignore[return-value]
    except Exception:
        # ${hydra:...} and similar only resolve inside a Hydra app; keep them as text then.
        return OmegaConf.to_container(conf, resolve=False)  # type: ignore[return-value]


def metric_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """metrics.csv as column -> float64 array, in file order (the trainer writes steps in order).

    Read by the one reader of metrics.csv, `runfolder.metrics.read_metrics`; a value written
    as nan stays NaN.
    Raises ValueError when the file has no rows or lacks step/train_acc/test_acc.
    """
    path = Path(run_dir) / METRICS
    rows = read_metrics(path)
    if not rows:
        raise ValueError(f"{path} has no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}")
    return {c: np.array([row[c] for row in rows], dtype=np.float64) for c in rows[0]}


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


@dataclass
class Run:
    """One run folder: what the analysis commands need from its config and summary."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    damage: str | None = None  # why its config or summary cannot be read

    @classmethod
    def load(cls, run_dir: Path) -> Run:
        try:
            return cls(Path(run_dir), read_config(run_dir), read_summary(run_dir))
        except GrokError as err:
            return cls(Path(run_dir), damage=str(err))

    @property
    def status(self) -> str:
        if self.damage is not None:
            return "damaged"
        if self.summary is None:
            return "unfinished"
        return str(self.summary.get("status", "unknown"))

    @property
    def data_size(self) -> int | None:
        """Number of training samples: summary n_train, else the config's train_size."""
        value = _get(self.summary, "n_train")
        if value is None:
            value = self.config.get("train_size")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def data_fraction(self) -> float | None:
        """The config's data_fraction, only when train_size did not override it."""
        if self.config.get("train_size") is not None:
            return None
        value = self.config.get("data_fraction")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def task_name(self) -> str | None:
        return _get(self.config, "task", "name")

    @property
    def model_name(self) -> str | None:
        return _get(self.config, "model", "name")

    @property
    def hidden_size(self) -> int | None:
        return _get(self.config, "model", "hidden_size")

    @property
    def num_layers(self) -> int | None:
        return _get(self.config, "model", "num_layers")

    @property
    def memorize_threshold(self) -> float:
        """The run's own thresholds.memorize (conf/run.yaml's for a run recorded without)."""
        value = _get(self.config, "thresholds", "memorize")
        return float(value if value is not None else default_thresholds().memorize)

    @property
    def generalize_threshold(self) -> float:
        value = _get(self.config, "thresholds", "generalize")
        return float(value if value is not None else default_thresholds().generalize)

    def skip_reason(self) -> str | None:
        """Why an analysis should leave this run out, or None when it is a usable finished run."""
        if self.damage is not None:
            return self.damage
        if self.summary is None:
            return "unfinished: no summary.json"
        if self.status != "completed":
            error = self.summary.get("error")
            return f"status {self.status}" + (f": {error}" if error else "")
        if self.data_size is None:
            return "data size unknown: no n_train in summary.json nor train_size in config"
        return None


def load_runs(roots: Iterable[Path]) -> list[Run]:
    """All run folders under the roots, loaded (metrics are read separately, when needed)."""
    return [Run.load(path) for path in find_run_dirs(roots)]
