"""`grok cds`: step-wise analysis and critical data size of finished runs (Zhu et al.).

Per run: the first step at which the (optionally smoothed) train / test accuracy reaches each
threshold, the memorization and generalization steps and the converged test accuracy.
Per data size (and model size): means over seeds and the regime of the Data Efficiency
Hypothesis. The critical data size is Definition 1: the smallest data size whose mean
converged test accuracy reaches epsilon.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from grok_cli.analysis.runs import Run, load_runs, read_metrics
from grok_cli.errors import GrokError, bad_value, check, report_user_errors
from grok_cli.training.records import converged_accuracy

log = logging.getLogger(__name__)

INSUFFICIENCY, SUFFICIENCY, SURPLUS = "insufficiency", "sufficiency", "surplus"
# Config keys that legitimately differ between the runs of one analysis.
EXPECTED_TO_VARY = {"seed", "data_fraction", "train_size", "device", "resume"}

SettingKey = tuple[Any, Any, Any, Any]  # (task, model, hidden_size, num_layers)


@dataclass(frozen=True)
class Params:
    """The analysis settings from conf/cds.yaml, validated."""

    thresholds: tuple[float, ...]
    smooth_sigma: float
    epsilon: float
    grok_ratio: float
    memorize: float | None  # None: each run's own thresholds.memorize
    generalize: float  # the test accuracy that counts as "generalized"


# ---------------------------------------------------------------- curves


def smooth_curve(steps: np.ndarray, acc: np.ndarray, sigma_steps: float) -> np.ndarray:
    """Gaussian smoothing with sigma given in training steps (the paper: 100 for modular).

    The filter works on rows, so sigma is divided by the evaluation spacing (the median gap
    between evaluated steps, which also copes with an occasional irregular row).
    """
    if sigma_steps <= 0 or len(acc) < 2:
        return acc.astype(float)
    from scipy.ndimage import gaussian_filter1d  # imported here: only needed when smoothing

    spacing = float(np.median(np.diff(steps)))
    if spacing <= 0:
        return acc.astype(float)
    return gaussian_filter1d(acc.astype(float), sigma_steps / spacing, mode="nearest")


def first_step_reaching(steps: np.ndarray, acc: np.ndarray, threshold: float) -> int | None:
    """The first evaluated step whose accuracy is >= threshold; None when never."""
    hits = np.flatnonzero(acc >= threshold)
    return int(steps[hits[0]]) if hits.size else None


def _curve(metrics: dict[str, np.ndarray], column: str, sigma: float):
    """(steps, smoothed accuracy) of one column, rows with a missing value dropped."""
    keep = np.isfinite(metrics[column])
    steps = metrics["step"][keep]
    return steps, smooth_curve(steps, metrics[column][keep], sigma)


def threshold_column(split: str, threshold: float) -> str:
    return f"{split}_step@{threshold:g}"


# ---------------------------------------------------------------- per run


def analyze_run(run: Run, metrics: dict[str, np.ndarray], params: Params) -> dict[str, Any]:
    """One row of cds_runs.csv."""
    train_steps, train = _curve(metrics, "train_acc", params.smooth_sigma)
    test_steps, test = _curve(metrics, "test_acc", params.smooth_sigma)
    row: dict[str, Any] = {
        "run_dir": str(run.path),
        "task": run.task_name,
        "model": run.model_name,
        "hidden_size": run.hidden_size,
        "num_layers": run.num_layers,
        "data_size": run.data_size,
        "data_fraction": run.data_fraction,
        "seed": run.seed,
    }
    for split, steps, acc in (("train", train_steps, train), ("test", test_steps, test)):
        for t in params.thresholds:
            row[threshold_column(split, t)] = first_step_reaching(steps, acc, t)
    memorize = params.memorize if params.memorize is not None else run.memorize_threshold
    mem = first_step_reaching(train_steps, train, memorize)
    gen = first_step_reaching(test_steps, test, params.generalize)
    row["memorization_step"] = mem
    row["generalization_step"] = gen
    row["grokking_delay"] = gen - mem if gen is not None and mem is not None else None
    # Raw, not smoothed: the same number summary.json reports.
    finite_test = metrics["test_acc"][np.isfinite(metrics["test_acc"])]
    row["converged_test_acc"] = converged_accuracy(finite_test) if finite_test.size else None
    return row


def step_columns(params: Params) -> list[str]:
    columns = [threshold_column("train", t) for t in params.thresholds]
    columns += [threshold_column("test", t) for t in params.thresholds]
    return columns + ["memorization_step", "generalization_step", "grokking_delay"]


# ---------------------------------------------------------------- per data size


def setting_key(row: dict[str, Any]) -> SettingKey:
    return (row["task"], row["model"], row["hidden_size"], row["num_layers"])


def setting_label(key: SettingKey) -> str:
    task, model, hidden, layers = key
    return f"{task}/{model}-h{hidden}-l{layers}"


def _mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    """Mean and sample std over the runs that have a value (std needs two of them)."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None
    std = float(np.std(xs, ddof=1)) if len(xs) > 1 else None
    return float(np.mean(xs)), std


def classify_regime(
    converged: float | None, gen_step: float | None, mem_step: float | None, params: Params
) -> str:
    """The regime of the Data Efficiency Hypothesis for one data size.

    insufficiency: converged test accuracy below epsilon (memorization only).
    sufficiency: reaches epsilon, but generalizes only grok_ratio x later than it memorized.
    surplus: reaches epsilon about as soon as it memorizes (or without ever memorizing).
    """
    if converged is None or converged < params.epsilon:
        return INSUFFICIENCY
    if gen_step is None:
        # Converged above epsilon, but the smoothed curve crosses it only at the very end.
        return SUFFICIENCY
    if mem_step is None:
        return SURPLUS
    return SUFFICIENCY if gen_step >= params.grok_ratio * mem_step else SURPLUS


def summarize_sizes(run_rows: list[dict[str, Any]], params: Params) -> list[dict[str, Any]]:
    """Rows of cds_by_size.csv: one per (model setting, data size), sorted."""
    groups: dict[tuple[SettingKey, int], list[dict[str, Any]]] = {}
    for row in run_rows:
        groups.setdefault((setting_key(row), row["data_size"]), []).append(row)
    out = []
    for (key, size), rows in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        task, model, hidden, layers = key
        summary: dict[str, Any] = {
            "task": task, "model": model, "hidden_size": hidden, "num_layers": layers,
            "data_size": size,
            "data_fraction": _mean_std([r["data_fraction"] for r in rows])[0],
            "n_runs": len(rows),
            "n_generalized": sum(r["generalization_step"] is not None for r in rows),
        }
        for column in [*step_columns(params), "converged_test_acc"]:
            summary[f"{column}_mean"], summary[f"{column}_std"] = _mean_std(
                [r[column] for r in rows]
            )
        summary["regime"] = classify_regime(
            summary["converged_test_acc_mean"],
            summary["generalization_step_mean"],
            summary["memorization_step_mean"],
            params,
        )
        out.append(summary)
    return out


def _sort_key(group: tuple[SettingKey, int]) -> tuple:
    # None sorts before values; str() keeps mixed types comparable.
    key, size = group
    return tuple((v is not None, v if isinstance(v, (int, float)) else str(v)) for v in key) + (
        size,
    )


def critical_data_size(size_rows: list[dict[str, Any]], epsilon: float) -> int | None:
    """Definition 1: the smallest data size whose mean converged test accuracy is >= epsilon."""
    sizes = [
        r["data_size"]
        for r in size_rows
        if r["converged_test_acc_mean"] is not None and r["converged_test_acc_mean"] >= epsilon
    ]
    return min(sizes) if sizes else None


def peak_generalization_size(size_rows: list[dict[str, Any]]) -> int | None:
    """The data size that generalizes slowest (Figure 1B's peak) among those that generalize."""
    candidates = [
        r for r in size_rows
        if r["regime"] != INSUFFICIENCY and r["generalization_step_mean"] is not None
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r["generalization_step_mean"])["data_size"]


def by_setting(size_rows: list[dict[str, Any]]) -> dict[SettingKey, list[dict[str, Any]]]:
    groups: dict[SettingKey, list[dict[str, Any]]] = {}
    for row in size_rows:
        groups.setdefault(setting_key(row), []).append(row)
    return groups


def setting_result(key: SettingKey, rows: list[dict[str, Any]], params: Params) -> dict:
    task, model, hidden, layers = key
    return {
        "task": task, "model": model, "hidden_size": hidden, "num_layers": layers,
        "critical_data_size": critical_data_size(rows, params.epsilon),
        "peak_generalization_size": peak_generalization_size(rows),
        "regimes": {str(r["data_size"]): r["regime"] for r in rows},
    }


# ---------------------------------------------------------------- config and inputs


def read_params(cfg: DictConfig) -> Params:
    """Validate the analysis settings; a bad one is a GrokError naming the key."""
    thresholds = cfg.get("thresholds")
    check(
        isinstance(thresholds, ListConfig) and len(thresholds) > 0
        and all(isinstance(t, (int, float)) and 0 < t <= 1 for t in thresholds),
        "thresholds", _plain(thresholds), "a non-empty list of accuracies in (0, 1]",
    )
    for key, low in (("epsilon", 0.0), ("grok_ratio", 0.0)):
        value = cfg.get(key)
        check(isinstance(value, (int, float)) and value > low, key, value, f"a number > {low:g}")
    check(cfg.epsilon <= 1, "epsilon", cfg.epsilon, "an accuracy in (0, 1]")
    sigma = cfg.get("smooth_sigma")
    check(isinstance(sigma, (int, float)) and sigma >= 0, "smooth_sigma", sigma,
          "a number of steps >= 0 (0 = no smoothing)")
    for key in ("memorize", "generalize"):
        value = cfg.get(key)
        check(value is None or (isinstance(value, (int, float)) and 0 < value <= 1), key, value,
              "null or an accuracy in (0, 1]")
    return Params(
        thresholds=tuple(sorted(float(t) for t in thresholds)),
        smooth_sigma=float(sigma),
        epsilon=float(cfg.epsilon),
        grok_ratio=float(cfg.grok_ratio),
        memorize=None if cfg.memorize is None else float(cfg.memorize),
        generalize=float(cfg.epsilon if cfg.generalize is None else cfg.generalize),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value)
    return value


def sweep_dirs(cfg: DictConfig) -> list[Path]:
    """sweep_dir as a list of existing folders: one path, or a list of paths."""
    if OmegaConf.is_missing(cfg, "sweep_dir") or cfg.get("sweep_dir") in (None, ""):
        raise GrokError("sweep_dir is required: grok cds sweep_dir=DIR (or sweep_dir=[DIR1,DIR2])")
    value = _plain(cfg.sweep_dir)
    paths = value if isinstance(value, list) else [value]
    for path in paths:
        check(isinstance(path, str) and Path(path).is_dir(), "sweep_dir", path,
              "an existing folder (or a list of them) holding run folders with metrics.csv")
    return [Path(p) for p in paths]


def collect(roots: list[Path], params: Params):
    """(run rows, skipped runs, (run row, metrics) pairs for plotting)."""
    runs = load_runs(roots)
    if not runs:
        shown = roots[0] if len(roots) == 1 else [str(r) for r in roots]
        raise bad_value("sweep_dir", str(shown), "a folder holding run folders with metrics.csv "
                        "(none found at any depth)")
    rows, skipped, curves, configs = [], [], [], []
    for run in runs:
        reason = run.skip_reason()
        metrics = None
        if reason is None:
            try:
                metrics = read_metrics(run.path)
            except (OSError, ValueError) as err:
                reason = f"bad metrics.csv: {err}"
        if reason is not None:
            log.warning("skipping %s (%s)", run.path, reason)
            skipped.append({"run_dir": str(run.path), "reason": reason})
            continue
        row = analyze_run(run, metrics, params)
        rows.append(row)
        curves.append((row, metrics))
        configs.append(run.config)
    if not rows:
        raise bad_value("sweep_dir", str(roots[0]) if len(roots) == 1 else [str(r) for r in roots],
                        f"at least one completed run; all {len(runs)} run folders were skipped")
    warn_varying_keys(configs)
    return rows, skipped, curves


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


def warn_varying_keys(configs: list[dict[str, Any]]) -> None:
    """Seeds are averaged and model sizes grouped; anything else that varies is mixed in."""
    flats = [_flatten(c) for c in configs if c]
    keys = sorted({k for f in flats for k in f})
    varying = [
        k for k in keys
        if len({f.get(k) for f in flats}) > 1
        and k not in EXPECTED_TO_VARY and not k.startswith(("model.", "hydra."))
        and k != "task.name"
    ]
    if varying:
        log.warning("runs differ in %s; they are averaged together as seeds", ", ".join(varying))


# ---------------------------------------------------------------- outputs


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0]) if rows else []
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def print_table(size_rows: list[dict[str, Any]], results: dict[SettingKey, dict],
                epsilon: float) -> None:
    for key, rows in by_setting(size_rows).items():
        print(f"\n{setting_label(key)}")
        print(f"{'data_size':>10}  {'regime':<13}  {'gen_step':>10}  {'conv_acc':>8}  runs")
        for r in rows:
            gen = r["generalization_step_mean"]
            gen_text = "-" if gen is None else f"{gen:.0f}"
            acc = r["converged_test_acc_mean"]
            acc_text = "-" if acc is None else f"{acc:.3f}"
            print(f"{r['data_size']:>10}  {r['regime']:<13}  {gen_text:>10}  {acc_text:>8}"
                  f"  {r['n_runs']}")
        cds = results[key]["critical_data_size"]
        print(f"critical data size (epsilon={epsilon:g}): {'none reached' if cds is None else cds}")


def output_dir(cfg: DictConfig) -> Path:
    if cfg.get("out_dir"):
        return Path(cfg.out_dir)
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


@report_user_errors
def main(cfg: DictConfig) -> None:
    """The Hydra task function of `grok cds`."""
    params = read_params(cfg)
    roots = sweep_dirs(cfg)
    run_rows, skipped, curves = collect(roots, params)
    size_rows = summarize_sizes(run_rows, params)
    settings = by_setting(size_rows)
    results = {key: setting_result(key, rows, params) for key, rows in settings.items()}

    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "cds_runs.csv", run_rows)
    write_csv(out / "cds_by_size.csv", size_rows)
    plots = []
    if cfg.get("plots", True):
        from grok_cli.analysis import cds_plots  # matplotlib import is slow; skip when off

        plots = cds_plots.write_all(out, curves, size_rows, params, setting_label)

    single = next(iter(results.values())) if len(results) == 1 else None
    report = {
        "critical_data_size": single["critical_data_size"] if single else None,
        "peak_generalization_size": single["peak_generalization_size"] if single else None,
        "epsilon": params.epsilon,
        "grok_ratio": params.grok_ratio,
        "generalize": params.generalize,
        "memorize": params.memorize,
        "smooth_sigma": params.smooth_sigma,
        "thresholds": list(params.thresholds),
        "regimes": single["regimes"] if single else None,
        "by_model_size": {setting_label(k): v for k, v in results.items()},
        "skipped": skipped,
        "inputs": {
            "sweep_dirs": [str(p.resolve()) for p in roots],
            "n_runs": len(run_rows),
            "n_skipped": len(skipped),
        },
        "outputs": ["cds_runs.csv", "cds_by_size.csv", *plots],
    }
    (out / "cds.json").write_text(json.dumps(report, indent=2) + "\n")

    print_table(size_rows, results, params.epsilon)
    if skipped:
        print(f"skipped {len(skipped)} run(s); see cds.json")
    print(f"wrote {out}")
