"""`grok cds` on synthetic run folders whose threshold steps are designed into the curves."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import grok, read_rows
from hydra import compose, initialize_config_dir

from grok_cli.analysis.cds.command import main
from grok_cli.analysis.cds.stepwise import smooth_curve
from grok_cli.cli import conf_dir
from grok_cli.runfolder.metrics import first_step_reaching

EVAL_EVERY = 10
LAST_STEP = 5000
THRESHOLDS = [round(0.1 * k, 1) for k in range(1, 10)]

# Staircase curves: flat at 0 until `start`, then one rung of +0.1 every `rung` steps
# (values 0.05, 0.15, ... capped at `top`). So accuracy k/10 is first reached exactly at
# start + k * rung, and train acc 0.99 (memorization) at start + 10 * rung.
# data size -> (train start, train rung, test start, test rung, test top), per seed shift
DESIGN = {
    1000: (100, 10, 200, 20, 0.35),  # insufficiency: test acc stalls at 0.35
    2000: (100, 10, 3000, 100, 1.0),  # sufficiency, slowest generalization (the peak)
    3000: (110, 10, 1500, 50, 1.0),  # sufficiency
    4000: (120, 10, 150, 20, 1.0),  # surplus: generalizes while memorizing
}
SEED_SHIFT = {0: 0, 1: 100}  # seed 1 starts generalizing 100 steps later


def staircase(steps: np.ndarray, start: int, rung: int, top: float) -> np.ndarray:
    rungs_passed = (steps - start) // rung
    acc = np.where(steps < start, 0.0, 0.05 + 0.1 * rungs_passed)
    return np.minimum(acc, top)


def expected_step(start: int, rung: int, threshold: float, top: float = 1.0) -> int | None:
    """Independent of the code under test: from the design, not from the written rows."""
    k = math.ceil(threshold * 10 - 0.5)  # rung index whose value 0.1k + 0.05 first >= threshold
    if min(top, 0.1 * k + 0.05) < threshold:
        return None
    return start + k * rung


def write_run(
    folder: Path, size: int, seed: int, *, status: str | None = "completed", hidden: int = 128
) -> None:
    train_start, train_rung, test_start, test_rung, top = DESIGN[size]
    steps = np.arange(0, LAST_STEP + 1, EVAL_EVERY)
    train = staircase(steps, train_start, train_rung, 1.0)
    test = staircase(steps, test_start + SEED_SHIFT[seed], test_rung, top)
    write_run_folder(folder, steps, train, test, size=size, seed=seed, status=status,
                     hidden=hidden, fraction=size / 4000)


def write_run_folder(
    folder: Path, steps, train, test, *, size: int, seed: int, status: str | None = "completed",
    hidden: int = 128, fraction: float | None = None, generalize: float = 0.95,
) -> None:
    """A run folder as `grok run` leaves it: metrics.csv, .hydra/config.yaml, summary.json."""
    folder.mkdir(parents=True)
    with (folder / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "train_loss", "train_acc", "test_loss", "test_acc", "l2_norm",
                         "lr", "elapsed_s"])
        for s, a, b in zip(steps, train, test, strict=True):
            writer.writerow([int(s), 1 - a, a, 1 - b, b, 10.0, 1e-3, s / 100])
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(
        f"train_size: {'null' if fraction is not None else size}\n"
        f"data_fraction: {fraction if fraction is not None else 1.0}\nseed: {seed}\n"
        "task:\n  name: modular_addition\n"
        f"model:\n  name: gpt\n  hidden_size: {hidden}\n  num_layers: 1\n"
        f"thresholds:\n  memorize: 0.99\n  generalize: {generalize}\n"
    )
    if status is not None:
        summary = {"status": status, "steps": int(steps[-1]), "n_train": size, "n_test": 3193}
        if status == "failed":
            summary["error"] = "CUDA out of memory"
        (folder / "summary.json").write_text(json.dumps(summary))


def make_sweep(root: Path, hidden_sizes: tuple[int, ...] = (128,)) -> Path:
    sweep = root / "sweep"
    for hidden in hidden_sizes:
        for i, (size, seed) in enumerate((s, seed) for s in DESIGN for seed in SEED_SHIFT):
            write_run(sweep / f"h{hidden}" / str(i), size, seed, hidden=hidden)
    write_run(sweep / "failed", 2000, 0, status="failed")
    write_run(sweep / "nested" / "deeper" / "unfinished", 3000, 0, status=None)
    return sweep


def compose_cds(*overrides: str):
    """conf/cds.yaml composed in-process (Hydra's compose API): `main` runs without a process."""
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(config_name="cds", overrides=list(overrides))


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cds")
    sweep = make_sweep(tmp)
    out, stdout = tmp / "out", io.StringIO()
    with contextlib.redirect_stdout(stdout):  # in-process; the CLI: test_bad_input_through_the_cli
        main(compose_cds(f"sweep_dir={sweep}", f"out_dir={out}"))
    return out, stdout.getvalue()


def test_run_table_matches_designed_steps(analyzed):
    out, _ = analyzed
    rows = read_rows(out / "cds_runs.csv")
    assert len(rows) == 8
    for row in rows:
        size, seed = int(row["data_size"]), int(row["seed"])
        train_start, train_rung, test_start, test_rung, top = DESIGN[size]
        test_start += SEED_SHIFT[seed]
        for t in THRESHOLDS:
            want_train = expected_step(train_start, train_rung, t)
            want_test = expected_step(test_start, test_rung, t, top)
            assert row[f"train_step@{t:g}"] == str(want_train)
            assert row[f"test_step@{t:g}"] == ("" if want_test is None else str(want_test))
        mem = train_start + 10 * train_rung
        assert int(row["memorization_step"]) == mem
        gen = expected_step(test_start, test_rung, 0.95, top)  # the run's thresholds.generalize
        assert row["generalization_step"] == ("" if gen is None else str(gen))
        assert row["grokking_delay"] == ("" if gen is None else str(gen - mem))
        assert float(row["converged_test_acc"]) == pytest.approx(top)
        assert row["model"] == "gpt" and row["hidden_size"] == "128"


def test_regimes_and_critical_data_size(analyzed):
    out, stdout = analyzed
    report = json.loads((out / "cds.json").read_text())
    assert report["regimes"] == {
        "1000": "insufficiency", "2000": "sufficiency", "3000": "sufficiency", "4000": "surplus",
    }
    assert report["critical_data_size"] == 2000
    assert report["peak_generalization_size"] == 2000
    assert report["epsilon"] == 0.9 and report["grok_ratio"] == 3
    assert report["inputs"]["n_runs"] == 8
    by_size = {int(r["data_size"]): r for r in read_rows(out / "cds_by_size.csv")}
    # generalization at 0.9: start + 9 rungs, seeds 100 steps apart
    assert float(by_size[2000]["generalization_step_mean"]) == 3000 + 900 + 50
    assert float(by_size[2000]["n_runs"]) == 2
    assert "critical data size (epsilon=0.9): 2000" in stdout


def test_failed_and_unfinished_runs_are_skipped(analyzed):
    out, _ = analyzed
    skipped = json.loads((out / "cds.json").read_text())["skipped"]
    reasons = {Path(s["run_dir"]).name: s["reason"] for s in skipped}
    assert reasons.keys() == {"failed", "unfinished"}
    assert "failed" in reasons["failed"] and "summary.json" in reasons["unfinished"]


def test_plots_written(analyzed):
    out, _ = analyzed
    for name in ("cds_steps.png", "cds_curves.png"):
        assert (out / name).stat().st_size > 1000
    assert not (out / "cds_accuracy_map.png").exists()  # one model size only


def test_model_sizes_give_one_result_each_and_a_map(tmp_path):
    sweep = make_sweep(tmp_path, hidden_sizes=(64, 128))
    out = tmp_path / "out"
    main(compose_cds(f"sweep_dir=[{sweep / 'h64'},{sweep / 'h128'}]", f"out_dir={out}",
                     "thresholds=[0.5,0.9]"))
    report = json.loads((out / "cds.json").read_text())
    assert report["critical_data_size"] is None  # ambiguous: see by_model_size
    assert sorted(v["hidden_size"] for v in report["by_model_size"].values()) == [64, 128]
    assert all(v["critical_data_size"] == 2000 for v in report["by_model_size"].values())
    assert report["skipped"] == []  # only the h64 / h128 folders were given
    assert (out / "cds_accuracy_map.png").is_file()
    assert "test_step@0.5" in read_rows(out / "cds_runs.csv")[0]


def test_smoothing_matches_hand_computed_kernel():
    # A unit step at row 5, evaluated every 10 steps; sigma = 10 steps = 1 row. Truncated at
    # 4 sigma (scipy's default), the smoothed value at row i is the kernel mass over offsets
    # k with i + k >= 5.
    steps = np.arange(0, 200, 10)
    acc = (steps >= 50).astype(float)
    w = {k: math.exp(-k * k / 2) for k in range(-4, 5)}
    total = sum(w.values())

    def mass(i: int) -> float:
        return sum(v for k, v in w.items() if i + k >= 5) / total

    smoothed = smooth_curve(steps, acc, sigma_steps=10)
    for i in range(3, 8):
        assert smoothed[i] == pytest.approx(mass(i), abs=1e-9)
    assert mass(4) > 0.1 > mass(3)  # so: 0.1 reached one row early,
    assert first_step_reaching(steps, smoothed, 0.1) == 40
    assert first_step_reaching(steps, smoothed, 0.5) == 50  # 0.5 on time,
    assert first_step_reaching(steps, smoothed, 0.9) == 60  # 0.9 one row late
    assert first_step_reaching(steps, acc, 0.9) == 50
    # The same sigma in steps on a finer grid (every 5 steps) is 2 rows.
    fine = np.arange(0, 200, 5)
    w2 = {k: math.exp(-k * k / 8) for k in range(-8, 9)}
    smoothed2 = smooth_curve(fine, (fine >= 50).astype(float), sigma_steps=10)
    half = sum(v for k, v in w2.items() if k >= 0) / sum(w2.values())
    assert smoothed2[10] == pytest.approx(half)
    assert np.array_equal(smooth_curve(steps, acc, 0), acc)


def test_smoothing_through_the_command(tmp_path):
    sweep = make_sweep(tmp_path)
    out = tmp_path / "out"
    main(compose_cds(f"sweep_dir={sweep}", f"out_dir={out}", "smooth_sigma=100", "plots=false"))
    rows = read_rows(out / "cds_runs.csv")
    row = next(r for r in rows if r["data_size"] == "4000" and r["seed"] == "0")
    # The 0.5 rung of a symmetric staircase is still crossed at its designed step (+-1 row),
    # while 0.1 comes earlier than designed (the smoothed curve rises before the first rung).
    assert abs(int(row["test_step@0.5"]) - expected_step(150, 20, 0.5)) <= EVAL_EVERY
    assert int(row["test_step@0.1"]) < expected_step(150, 20, 0.1)
    assert not list(out.glob("*.png"))


BAD_INPUTS = [
    (["sweep_dir=does/not/exist"], "sweep_dir='does/not/exist'"),
    (["sweep_dir=empty"], "none found"),
    (["sweep_dir=sweep/failed"], "all 1 run folders were skipped"),
    (["sweep_dir=sweep", "epsilon=1.5"], "epsilon=1.5"),
    (["sweep_dir=sweep", "thresholds=[0.5,2]"], "thresholds="),
]


def bad_input_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_run(tmp_path / "sweep" / "failed", 2000, 0, status="failed")


def one_error_line(stderr: str, words: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], stderr


@pytest.mark.parametrize("args, words", BAD_INPUTS)
def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, words):
    """In-process: exit 2, one `error:` line naming the key, and no output folder."""
    bad_input_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(compose_cds(*args, f"out_dir={tmp_path / 'out'}"))
    assert exited.value.code == 2
    one_error_line(capsys.readouterr().err, words)
    assert not (tmp_path / "out").exists()


def test_bad_input_through_the_cli(tmp_path):
    """The real process: a missing sweep_dir is one line and exit 2, no traceback."""
    bad_input_folder(tmp_path)
    result = grok("cds", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    one_error_line(result.stderr, "sweep_dir is required")
