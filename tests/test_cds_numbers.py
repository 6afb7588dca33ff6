"""The numbers `grok cds` reports, on hand-built sweeps whose answers are computed by hand:
exact thresholds, one meaning per column name, censored seeds, a lucky small size, missing
values, a torn last row, and how the files are written. In-process (Hydra's compose API)."""

from __future__ import annotations

import ast
import json
import logging
import os
from graphlib import TopologicalSorter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import read_rows
from matplotlib.colors import to_hex
from test_cds import compose_cds, write_run_folder

from grok_cli.analysis.cds import command as cds
from grok_cli.analysis.cds.plots import plot_curves, plot_step_wise
from grok_cli.analysis.cds.stepwise import (
    Params,
    by_setting,
    setting_result,
    summarize_sizes,
)
from grok_cli.runfolder.metrics import first_step, first_step_reaching, read_metrics
from grok_cli.runfolder.runs import metric_arrays
from grok_cli.runfolder.summary import summarize

STEPS = np.arange(0, 1000, 10)  # 100 evaluations; converged_test_acc is the mean of the last 10
LAST = 990


def levels(changes: dict[int, float]) -> np.ndarray:
    """A curve that holds each value from its step on, e.g. {0: 0.0, 400: 700 / 1000}."""
    acc = np.zeros(len(STEPS))
    for step, value in sorted(changes.items()):
        acc[STEPS >= step] = value
    return acc


MEMORIZED_AT_100 = levels({0: 0.0, 100: 1.0})


def make_sweep(root: Path, design: dict[int, list[np.ndarray]], **kwargs) -> Path:
    """One run folder per (data size, seed): design maps a size to its seeds' test curves."""
    for size, tests in design.items():
        for seed, test in enumerate(tests):
            write_run_folder(root / f"n{size}_s{seed}", STEPS, MEMORIZED_AT_100, test,
                             size=size, seed=seed, **kwargs)
    return root


def run_cds(sweep: Path, out: Path, *overrides: str) -> dict:
    """`grok cds` in-process; returns cds.json."""
    cds.main(compose_cds(f"sweep_dir={sweep}", f"out_dir={out}", "plots=false", *overrides))
    return json.loads((out / "cds.json").read_text())


def by_size(out: Path) -> dict[int, dict[str, str]]:
    return {int(r["data_size"]): r for r in read_rows(out / "cds_by_size.csv")}


# Accuracies of 1,000 test samples, as the trainer writes them: integer counts / 1000 in float64.
EXACT = levels({0: 0.0, 300: 699 / 1000, 400: 700 / 1000, 600: 900 / 1000, 800: 950 / 1000})
AT_07 = levels({0: 0.0, 400: 700 / 1000})


def test_a_curve_landing_exactly_on_a_threshold_is_found_at_that_step(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", {500: [AT_07] * 3, 1000: [EXACT] * 3})
    run = sweep / "n1000_s0"
    rows = read_metrics(run / "metrics.csv")
    arrays = metric_arrays(run)
    for threshold, step in ((0.7, 400), (0.9, 600), (0.95, 800)):
        assert first_step(rows, "test_acc", threshold) == step
        assert first_step_reaching(arrays["step"], arrays["test_acc"], threshold) == step

    out = tmp_path / "out"
    report = run_cds(sweep, out, "thresholds=[0.7,0.9,0.95]", "epsilon=0.95", "smooth_sigma=0")
    for row in read_rows(out / "cds_runs.csv"):
        if row["data_size"] == "1000":
            assert (row["test_step@0.7"], row["test_step@0.9"], row["test_step@0.95"]) == (
                "400", "600", "800")
            assert float(row["converged_test_acc"]) == 0.95  # ten rows at 950/1000
    # Definition 1 at epsilon 0.95: the 1000 runs converge to exactly 0.95 (a mean over ten
    # evaluations) and so does their mean over seeds.
    assert report["critical_data_size"] == 1000
    # ... and at epsilon 0.7: three seeds at exactly 700/1000 average to 0.7, not below it.
    report = run_cds(sweep, tmp_path / "out07", "epsilon=0.7")
    assert report["critical_data_size"] == 500
    assert float(by_size(tmp_path / "out07")[500]["converged_test_acc_mean"]) == 0.7


def test_generalization_step_means_what_summary_json_means(tmp_path):
    """Each run's own thresholds.generalize (0.95 by default), never epsilon; the epsilon step
    has its own column named by its threshold."""
    sweep = make_sweep(tmp_path / "sweep", {1000: [EXACT]})
    write_run_folder(sweep / "own", STEPS, MEMORIZED_AT_100, EXACT, size=2000, seed=0,
                     generalize=0.9)
    out = tmp_path / "out"
    report = run_cds(sweep, out, "epsilon=0.7")
    runs = {r["data_size"]: r for r in read_rows(out / "cds_runs.csv")}
    assert runs["1000"]["generalization_step"] == "800"  # test_acc >= 0.95
    assert runs["2000"]["generalization_step"] == "600"  # its config says generalize: 0.9
    assert runs["1000"]["test_step@0.7"] == "400"  # epsilon, named by its threshold
    assert runs["1000"]["memorization_step"] == "100"
    # The same numbers summary.json holds for those runs.
    for size, generalize, step in (("1000", 0.95, 800), ("2000", 0.9, 600)):
        thresholds = SimpleNamespace(memorize=0.99, generalize=generalize)
        summary = summarize(read_metrics(Path(runs[size]["run_dir"]) / "metrics.csv"),
                            thresholds)
        assert (summary["generalization_step"], summary["memorization_step"]) == (step, 100)
    assert report["generalize"] == [0.9, 0.95] and report["memorize"] == [0.99]
    assert report["regime_step"] == "test_step@0.7"


def test_seeds_that_never_generalize_count_at_their_last_step(tmp_path):
    """Size 200: one seed in three reaches 0.9 (at step 200, twice its memorization step);
    the others stall at 880/1000. Averaging only the seed that made it would call 200 the
    fastest size (surplus); counting the others at their last step makes it the slowest."""
    fast, stalled = levels({0: 0.0, 200: 1.0}), levels({0: 0.0, 200: 880 / 1000})
    design = {100: [levels({0: 0.3})] * 3, 200: [fast, stalled, stalled],
              400: [levels({0: 0.0, 500: 1.0})] * 3}
    out = tmp_path / "out"
    report = run_cds(make_sweep(tmp_path / "sweep", design), out)
    # converged: (1 + 0.88 + 0.88) / 3 = 0.92 >= 0.9, and 726.7 >= 3 x 100: grokking
    assert report["regimes"] == {"100": "insufficiency", "200": "sufficiency",
                                 "400": "sufficiency"}
    assert report["peak_generalization_size"] == 200
    sizes = by_size(out)
    assert sizes[200]["test_step@0.9_n"] == "1"
    assert float(sizes[200]["test_step@0.9_mean"]) == (200 + LAST + LAST) / 3
    assert sizes[200]["generalization_step_n"] == "1"
    assert float(sizes[400]["test_step@0.9_mean"]) == 500
    assert report["step_rule"].startswith("censored mean")
    assert report["regime_step"] == "test_step@0.9"


def test_a_lucky_small_size_is_flagged(tmp_path, caplog):
    good, bad = levels({0: 0.0, 300: 1.0}), levels({0: 0.0, 300: 0.5})
    design = {100: [good, good], 200: [bad, bad], 300: [good, good], 400: [good, good]}
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        report = run_cds(make_sweep(tmp_path / "sweep", design), out)
    assert report["critical_data_size"] == 100  # Definition 1, as the paper defines it
    assert report["critical_data_size_stable"] == 300  # 200 falls below epsilon
    (warning,) = report["warnings"]
    assert "critical data size 100" in warning and "from 300 on" in warning
    assert warning in caplog.text
    setting = next(iter(report["by_model_size"].values()))
    assert (setting["critical_data_size"], setting["critical_data_size_stable"]) == (100, 300)


def test_stable_equals_definition_1_on_a_clean_sweep(tmp_path):
    good, bad = levels({0: 0.0, 300: 1.0}), levels({0: 0.0, 300: 0.5})
    out = tmp_path / "out"
    report = run_cds(make_sweep(tmp_path / "sweep", {100: [bad], 200: [good], 300: [good]}), out)
    assert report["critical_data_size"] == report["critical_data_size_stable"] == 200
    assert report["warnings"] == []


def test_converged_test_acc_drops_a_missing_value_as_summary_json_does(tmp_path):
    """20 evaluations at i/20, the last one missing (NaN): the last 10% of the 19 with a value
    are rows 17 and 18, so converged_test_acc = (0.85 + 0.90) / 2 in both places."""
    steps = np.arange(0, 200, 10)
    test = np.arange(20) / 20
    test[-1] = np.nan
    write_run_folder(tmp_path / "sweep" / "run", steps, np.ones(20), test, size=100, seed=0)
    out = tmp_path / "out"
    run_cds(tmp_path / "sweep", out)
    (row,) = read_rows(out / "cds_runs.csv")
    thresholds = SimpleNamespace(memorize=0.99, generalize=0.95)
    summary = summarize(read_metrics(tmp_path / "sweep" / "run" / "metrics.csv"), thresholds)
    assert float(row["converged_test_acc"]) == summary["converged_test_acc"]
    assert summary["converged_test_acc"] == pytest.approx(0.875, abs=1e-15)


def test_a_torn_last_row_never_becomes_a_step(tmp_path):
    """A run killed mid-append leaves `990,0.1,1.0` without its other columns: that half row
    must not make the run 'memorized at 990': the row is dropped, the run kept."""
    make_sweep(tmp_path / "sweep", {100: [levels({0: 0.0, 300: 1.0})]})
    torn = tmp_path / "sweep" / "torn"
    write_run_folder(torn, STEPS[:-1], np.full(99, 0.5), np.full(99, 0.5), size=200, seed=0)
    with (torn / "metrics.csv").open("a") as fh:
        fh.write(f"{LAST},0.1,1.0")
    out = tmp_path / "out"
    run_cds(tmp_path / "sweep", out)
    (row,) = [r for r in read_rows(out / "cds_runs.csv") if r["data_size"] == "200"]
    assert row["memorization_step"] == ""  # train_acc 0.5 in every complete row
    assert float(row["converged_test_acc"]) == 0.5


def test_every_output_is_written_whole(tmp_path, monkeypatch):
    """Each file lands by one rename of a complete temporary file (grok_cli.io), so a reader
    of a live output folder never sees half a table or plot."""
    replaced: list[str] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        replaced.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    good = levels({0: 0.0, 300: 1.0})
    out = tmp_path / "out"
    run_cds(make_sweep(tmp_path / "sweep", {100: [good], 200: [good]}), out, "plots=true")
    written = sorted(p.name for p in out.iterdir())
    assert written == ["cds.json", "cds_by_size.csv", "cds_curves.png", "cds_runs.csv",
                       "cds_steps.png"]
    assert sorted(replaced) == written


def test_plots_show_sizes_seeds_spread_and_the_critical_size(tmp_path):
    good, bad = levels({0: 0.0, 300: 1.0}), levels({0: 0.0, 300: 0.5})
    sweep = make_sweep(tmp_path / "sweep", {100: [bad, bad], 200: [good, bad], 400: [good, good]})
    params = Params(thresholds=(0.5, 0.9), smooth_sigma=0.0, epsilon=0.9, grok_ratio=3.0)
    run_rows, _, curves, _ = cds.collect([sweep], params)
    (key, rows), = by_setting(summarize_sizes(run_rows, params)).items()
    result = setting_result(key, rows, params)
    assert result["critical_data_size"] == 400

    fig = plot_curves(curves, params, key)
    legends = [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]
    assert legends == [["100", "200", "400"], ["0", "1"]]  # sizes by colour, seeds by style
    styles = {(to_hex(line.get_color()), line.get_linestyle()) for line in fig.axes[1].lines
              if len(line.get_xdata()) == len(STEPS)}
    assert len(styles) == 6  # 3 sizes x 2 seeds, each its own colour and style
    assert "modular_addition" in fig.get_suptitle()

    fig = plot_step_wise(rows, result, params, key)
    test_ax = fig.axes[0]
    assert any(list(line.get_xdata()) == [400, 400] for line in test_ax.lines)  # critical size
    assert test_ax.collections  # the std error bars and the markers


def test_analysis_modules_import_one_way():
    """No import cycle inside grok_cli.analysis, lazy imports inside functions included."""
    package = Path(cds.__file__).parents[1]
    modules = {".".join(path.relative_to(package).with_suffix("").parts): path
               for path in package.rglob("*.py")}
    graph = {name: analysis_imports(path, set(modules)) for name, path in modules.items()}
    list(TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    # The command on top, the pure analysis below the plots.
    assert graph["cds.command"] >= {"cds.plots", "cds.stepwise"}
    assert "cds.command" not in graph["cds.plots"] | graph["cds.stepwise"]


def analysis_imports(path: Path, modules: set[str]) -> set[str]:
    """The grok_cli.analysis modules a file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        imported = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for module in imported:
            if not module.startswith("grok_cli.analysis"):
                continue
            base = module.removeprefix("grok_cli.analysis").lstrip(".")
            subs = ({f"{base}.{a.name}".lstrip(".") for a in node.names}
                    if isinstance(node, ast.ImportFrom) else set())
            names |= (subs & modules) or ({base} & modules)
    return names
