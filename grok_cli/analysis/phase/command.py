"""`grok phase`: the command. Reads the jobs of a sweep folder (any launcher), finds each job's
steps to the rule's accuracies, classifies it (`phases`), and writes phase.csv, phase.json and
phase.png (`plots`).

Imports run one way: command -> plots -> phases; the steps come from
runfolder.metrics.first_step_reaching, the one definition `grok cds` and summary.json use.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grok_cli.analysis.output import output_dir, threshold_column, write_csv, write_json
from grok_cli.analysis.phase.phases import PHASES, Rule, classify, majority
from grok_cli.errors import GrokError, bad_value, check, is_int, is_number, report_user_errors
from grok_cli.runfolder.metrics import first_step_reaching
from grok_cli.runfolder.runs import Run, metric_arrays
from grok_cli.runfolder.sweep import find_job_dirs, override_values, read_overrides
from grok_cli.threads import apply_threads, check_threads

log = logging.getLogger(__name__)

Cell = tuple[Any, Any]  # (x value, y value)


def read_rule(cfg: DictConfig) -> Rule:
    for key in ("train_acc", "test_acc"):
        check(is_number(cfg[key]) and 0 < cfg[key] <= 1, key, cfg[key], "an accuracy in (0, 1]")
    check(is_int(cfg.budget) and cfg.budget > 0, "budget", cfg.budget,
          "a whole number of steps > 0")
    check(is_int(cfg.grok_delay) and cfg.grok_delay >= 0, "grok_delay", cfg.grok_delay,
          "a whole number of steps >= 0")
    return Rule(float(cfg.train_acc), float(cfg.test_acc), int(cfg.budget), int(cfg.grok_delay))


def read_jobs(cfg: DictConfig) -> tuple[Path, list[tuple[Path, dict[str, Any]]]]:
    """(sweep folder, [(job folder, {key: value} of its overrides)]), or a GrokError."""
    if OmegaConf.is_missing(cfg, "sweep_dir") or cfg.get("sweep_dir") in (None, ""):
        raise GrokError("sweep_dir is required: grok phase sweep_dir=DIR x=KEY y=KEY")
    root = cfg.sweep_dir
    check(isinstance(root, str) and Path(root).is_dir(), "sweep_dir", root,
          "an existing sweep folder (grok sweep's hydra.sweep.dir)")
    jobs = find_job_dirs(Path(root))
    if jobs == [Path(root)]:  # the folder itself holds the only overrides: one run
        raise bad_value("sweep_dir", root, "a sweep folder: this is one run's folder (a "
                        "phase diagram needs a grok sweep over two keys)")
    if not jobs:
        raise bad_value("sweep_dir", root, "a sweep folder: none of its folders is a sweep job "
                        "(a job holds .hydra/overrides.yaml)")
    return Path(root), [(job, override_values(read_overrides(job))) for job in jobs]


def check_axes(cfg: DictConfig, root: Path, jobs: list[tuple[Path, dict[str, Any]]]) -> None:
    """x and y must be two different keys each job overrides, with two values or more; no other
    key but seed may vary, or cells would mix settings."""
    values: dict[str, set[str]] = {}
    for _, overrides in jobs:
        for key, value in overrides.items():
            values.setdefault(key, set()).add(repr(value))
    swept = sorted(key for key, seen in values.items() if len(seen) > 1)
    for axis in ("x", "y"):
        key = cfg.get(axis)
        if OmegaConf.is_missing(cfg, axis) or key in (None, ""):
            raise GrokError(f"{axis} is required: one of the keys sweep_dir={str(root)!r} sweeps "
                            f"({', '.join(swept) or 'none'})")
        single = f" ({key} has one value only)" if len(values.get(key, ())) == 1 else ""
        check(key in swept and key != "seed", axis, key,
              f"a key sweep_dir={str(root)!r} sweeps over two values or more{single}: "
              f"{', '.join(k for k in swept if k != 'seed') or 'none'}")
        missing = [job for job, overrides in jobs if key not in overrides]
        if missing:
            raise bad_value(axis, key, f"a key every job overrides; {missing[0]} does not")
    check(cfg.x != cfg.y, "y", cfg.y, f"a key other than x={cfg.x}")
    others = [key for key in swept if key not in (cfg.x, cfg.y, "seed")]
    if others:
        raise bad_value("sweep_dir", str(root), f"a sweep over x, y and seed only; it also "
                        f"sweeps {', '.join(others)}, which one diagram would mix")


def job_row(job: Path, overrides: dict[str, Any], cfg: DictConfig, rule: Rule,
            root: Path) -> dict[str, Any]:
    """One row of phase.csv."""
    run = Run.load(job)
    train_column = threshold_column("train", rule.train_acc)
    test_column = threshold_column("test", rule.test_acc)
    row: dict[str, Any] = {
        "job": str(job.relative_to(root)) if job != root else ".",
        cfg.x: overrides[cfg.x],
        cfg.y: overrides[cfg.y],
        "seed": overrides.get("seed", run.seed),
        "status": run.status,
        train_column: None, test_column: None, "last_step": None,
    }
    try:
        metrics = metric_arrays(job)
    except FileNotFoundError:
        metrics = None  # the job failed (or was killed) before its first evaluation
    except ValueError as err:
        log.warning("%s: %s", job, err)
        metrics = None
    if metrics is not None:
        steps = metrics["step"]
        row[train_column] = first_step_reaching(steps, metrics["train_acc"], rule.train_acc)
        row[test_column] = first_step_reaching(steps, metrics["test_acc"], rule.test_acc)
        row["last_step"] = int(steps[-1])
    row["phase"] = classify(row[train_column], row[test_column], row["last_step"], rule)
    return row


def cells(rows: list[dict[str, Any]], cfg: DictConfig) -> list[dict[str, Any]]:
    """Per (x, y): the seeds' phases, the majority and how many seeds agree with it."""
    grouped: dict[Cell, list[str]] = {}
    for row in rows:
        grouped.setdefault((row[cfg.x], row[cfg.y]), []).append(row["phase"])
    return [{"x": x, "y": y, "phases": phases, **dict(zip(("majority", "agree"),
                                                          majority(phases), strict=True)),
             "n": len(phases)}
            for (x, y), phases in sorted(grouped.items(), key=lambda kv: _order(kv[0]))]


def _order(cell: Cell) -> tuple:
    return tuple((isinstance(v, str), v if not isinstance(v, str) else 0, str(v)) for v in cell)


def report(cfg: DictConfig, rule: Rule, root: Path, rows: list[dict[str, Any]],
           grid: list[dict[str, Any]], outputs: list[str]) -> dict[str, Any]:
    """phase.json."""
    counts = Counter(row["phase"] for row in rows)
    return {
        "x": cfg.x, "y": cfg.y,
        "rule": rule.describe(),
        "thresholds": {"train_acc": rule.train_acc, "test_acc": rule.test_acc,
                       "budget": rule.budget, "grok_delay": rule.grok_delay},
        "counts": {phase: counts.get(phase, 0) for phase in PHASES},
        "cells": [{cfg.x: c["x"], cfg.y: c["y"], "majority": c["majority"],
                   "agree": c["agree"], "seeds": c["n"], "phases": c["phases"]} for c in grid],
        "inputs": {"sweep_dir": str(root.resolve()), "n_jobs": len(rows)},
        "outputs": outputs,
    }


@report_user_errors
def main(cfg: DictConfig) -> None:
    """The Hydra task function of `grok phase`."""
    from grok_cli.analysis.phase import plots as phase_plots

    rule = read_rule(cfg)
    check(isinstance(cfg.plots, bool), "plots", cfg.plots, "true or false")
    check_threads(cfg.threads)
    root, jobs = read_jobs(cfg)
    check_axes(cfg, root, jobs)
    rows = sorted((job_row(job, overrides, cfg, rule, root) for job, overrides in jobs),
                  key=lambda r: (_order((r[cfg.x], r[cfg.y])), str(r["seed"])))
    grid = cells(rows, cfg)

    apply_threads(cfg.threads, None, "cpu")  # small per-job tables: no pool to size
    out = output_dir(cfg)
    write_csv(out / "phase.csv", rows)
    outputs = ["phase.csv", "phase.json"]
    if cfg.plots:
        phase_plots.plot_phase(out / "phase.png", grid, cfg.x, cfg.y, rule)
        outputs.append("phase.png")
    write_json(out / "phase.json", report(cfg, rule, root, rows, grid, outputs))

    print(f"{cfg.y} \\ {cfg.x}: majority phase over seeds (agreeing/seeds)")
    for c in grid:
        print(f"  {cfg.x}={c['x']}  {cfg.y}={c['y']}  {c['majority']} ({c['agree']}/{c['n']})")
    counts = Counter(row["phase"] for row in rows)
    print("jobs: " + ", ".join(f"{p} {counts.get(p, 0)}" for p in PHASES))
    print(f"wrote {out}")

