"""`grok cds`: the command. Reads run folders, runs the step-wise analysis and Definition 1
(`stepwise`), and writes cds_runs.csv, cds_by_size.csv, cds.json and the plots (`plots`).

Imports run one way: command -> plots -> stepwise -> runfolder (runs, metrics).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from grok_cli.analysis.cds import plots as cds_plots
from grok_cli.analysis.cds.stepwise import (
    STEP_RULE,
    Curves,
    Params,
    SettingKey,
    analyze_run,
    by_setting,
    setting_label,
    setting_result,
    summarize_sizes,
)
from grok_cli.analysis.output import output_dir, write_csv, write_json
from grok_cli.errors import GrokError, bad_value, check, is_number, report_user_errors
from grok_cli.runfolder.runs import Run, load_runs, metric_arrays
from grok_cli.threads import apply_threads, check_threads

log = logging.getLogger(__name__)

# Config keys that legitimately differ between the runs of one analysis.
EXPECTED_TO_VARY = {"seed", "data_fraction", "train_size", "device", "resume"}


# ---------------------------------------------------------------- config and inputs


def read_params(cfg: DictConfig) -> Params:
    """Validate the analysis settings; a bad one is a GrokError naming the key."""
    thresholds = cfg.get("thresholds")
    check(
        isinstance(thresholds, ListConfig) and len(thresholds) > 0
        and all(is_number(t) and 0 < t <= 1 for t in thresholds),
        "thresholds", _plain(thresholds), "a non-empty list of accuracies in (0, 1]",
    )
    check(is_number(cfg.epsilon) and 0 < cfg.epsilon <= 1, "epsilon", cfg.epsilon,
          "an accuracy in (0, 1]")
    check(is_number(cfg.grok_ratio) and cfg.grok_ratio > 0, "grok_ratio", cfg.grok_ratio,
          "a number > 0")
    sigma = cfg.get("smooth_sigma")
    check(is_number(sigma) and sigma >= 0, "smooth_sigma", sigma,
          "a number of steps >= 0 (0 = no smoothing)")
    check(isinstance(cfg.plots, bool), "plots", cfg.plots, "true or false")
    check_threads(cfg.threads)
    return Params(
        # epsilon joins the ladder: test_step@epsilon is the step the regimes are judged by.
        thresholds=tuple(sorted({float(t) for t in thresholds} | {float(cfg.epsilon)})),
        smooth_sigma=float(sigma),
        epsilon=float(cfg.epsilon),
        grok_ratio=float(cfg.grok_ratio),
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


def collect(roots: list[Path], params: Params
            ) -> tuple[list[dict[str, Any]], list[dict[str, str]], Curves, list[Run]]:
    """(cds_runs.csv rows, skipped runs, (row, metrics) pairs for plotting, the runs analysed)."""
    runs = load_runs(roots)
    if not runs:
        shown = roots[0] if len(roots) == 1 else [str(r) for r in roots]
        raise bad_value("sweep_dir", str(shown), "a folder holding run folders with metrics.csv "
                        "(none found at any depth)")
    rows, skipped, curves, used = [], [], [], []
    for run in runs:
        if run.damage is not None:  # not an unfinished run: a file that should be readable
            raise GrokError(run.damage)
        reason = run.skip_reason()
        metrics = None
        if reason is None:
            try:
                metrics = metric_arrays(run.path)
            except (OSError, ValueError, TypeError, csv.Error) as err:  # a foreign or torn file
                reason = f"bad metrics.csv: {err}"
            else:
                check_final_row(run, metrics)
        if reason is not None:
            log.warning("skipping %s (%s)", run.path, reason)
            skipped.append({"run_dir": str(run.path), "reason": reason})
            continue
        row = analyze_run(run, metrics, params)
        rows.append(row)
        curves.append((row, metrics))
        used.append(run)
    if not rows:
        raise bad_value("sweep_dir", str(roots[0]) if len(roots) == 1 else [str(r) for r in roots],
                        f"at least one completed run; all {len(runs)} run folders were skipped")
    warn_varying_keys([run.config for run in used])
    return rows, skipped, curves, used


def check_final_row(run: Run, metrics: dict[str, Any]) -> None:
    """summary.json's final row must be metrics.csv's last: else one of the two is stale or
    another run's (copied over, swapped), and the numbers would mix two runs."""
    final = (run.summary or {}).get("final")
    if not isinstance(final, dict):
        return  # an older summary without it
    last = {key: float(values[-1]) for key, values in metrics.items()}
    differ = [key for key in ("step", "train_acc", "test_acc") if key in final and key in last
              and not (float(final[key]) == last[key]
                       or math.isnan(float(final[key])) and math.isnan(last[key]))]
    if differ:
        raise GrokError(f"run {run.path}: metrics.csv ends with {differ[0]}={last[differ[0]]:g} "
                        f"but summary.json's final row has {final[differ[0]]!r}: one of them is "
                        "stale or another run's; restore the run's own files")


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


def instability_warnings(results: dict[SettingKey, dict], epsilon: float) -> list[str]:
    """A line per model setting whose Definition 1 size is followed by a size below epsilon."""
    lines = []
    for key, result in results.items():
        cds, stable = result["critical_data_size"], result["critical_data_size_stable"]
        if cds != stable:
            lines.append(
                f"{setting_label(key)}: critical data size {cds} (Definition 1) but a larger size "
                f"falls below epsilon={epsilon:g}; every size from "
                f"{'none' if stable is None else stable} on reaches it "
                "(critical_data_size_stable): more seeds would tell which holds")
    return lines


def build_report(params: Params, results: dict[SettingKey, dict], runs: list[Run],
                 warnings: list[str], skipped: list[dict], roots: list[Path],
                 outputs: list[str]) -> dict[str, Any]:
    """cds.json. The per-setting results are repeated at the top when there is one setting."""
    single = next(iter(results.values())) if len(results) == 1 else {}
    return {
        **{key: single.get(key) for key in ("critical_data_size", "critical_data_size_stable",
                                            "peak_generalization_size")},
        "epsilon": params.epsilon,
        "grok_ratio": params.grok_ratio,
        "regime_step": params.regime_column,
        "step_rule": STEP_RULE,
        # The runs' own thresholds behind memorization_step / generalization_step.
        "memorize": sorted({run.memorize_threshold for run in runs}),
        "generalize": sorted({run.generalize_threshold for run in runs}),
        "smooth_sigma": params.smooth_sigma,
        "thresholds": list(params.thresholds),
        "regimes": single.get("regimes"),
        "by_model_size": {setting_label(k): v for k, v in results.items()},
        "warnings": warnings,
        "skipped": skipped,
        "inputs": {
            "sweep_dirs": [str(p.resolve()) for p in roots],
            "n_runs": len(runs),
            "n_skipped": len(skipped),
        },
        "outputs": outputs,
    }


def print_table(size_rows: list[dict[str, Any]], results: dict[SettingKey, dict],
                params: Params) -> None:
    step = params.regime_column
    for key, rows in by_setting(size_rows).items():
        print(f"\n{setting_label(key)}")
        print(f"{'data_size':>10}  {'regime':<13}  {step:>13}  {'reached':>7}  {'conv_acc':>8}  "
              "runs")
        for r in rows:
            acc = r["converged_test_acc_mean"]
            acc_text = "-" if acc is None else f"{acc:.3f}"
            print(f"{r['data_size']:>10}  {r['regime']:<13}  {r[step + '_mean']:>13.0f}  "
                  f"{r[step + '_n']:>7}  {acc_text:>8}  {r['n_runs']}")
        result = results[key]
        for name, label in (("critical_data_size", "critical data size"),
                            ("critical_data_size_stable", "stable critical data size")):
            value = result[name]
            print(f"{label} (epsilon={params.epsilon:g}): "
                  f"{'none reached' if value is None else value}")


@report_user_errors
def main(cfg: DictConfig) -> None:
    """The Hydra task function of `grok cds`."""
    params = read_params(cfg)
    roots = sweep_dirs(cfg)
    apply_threads(cfg.threads, None, "cpu")  # numpy on small per-run arrays: no pool to size
    run_rows, skipped, curves, runs = collect(roots, params)
    size_rows = summarize_sizes(run_rows, params)
    results = {key: setting_result(key, rows, params)
               for key, rows in by_setting(size_rows).items()}
    warnings = instability_warnings(results, params.epsilon)
    for line in warnings:
        log.warning(line)

    out = output_dir(cfg)
    write_csv(out / "cds_runs.csv", run_rows)
    write_csv(out / "cds_by_size.csv", size_rows)
    plots = cds_plots.write_all(out, curves, size_rows, results, params) if cfg.plots else []
    outputs = ["cds_runs.csv", "cds_by_size.csv", *plots]
    write_json(out / "cds.json",
               build_report(params, results, runs, warnings, skipped, roots, outputs))

    print_table(size_rows, results, params)
    if skipped:
        print(f"skipped {len(skipped)} run(s); see cds.json")
    print(f"wrote {out}")
