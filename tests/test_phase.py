"""`grok phase`: hand-classified jobs of a fake sweep folder, the files it writes, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import grok, grok_here, read_rows

from grok_cli.analysis.phase.phases import Rule, classify, majority

EVAL_EVERY = 10
RULE = ["budget=1000", "grok_delay=100"]  # acc 0.9 both: the default
# (lr, weight decay, seed) -> (first step train acc >= 0.9, same for test, last step, phase),
# phases decided by hand from Liu et al.'s rule with budget 1000 and delay 100.
JOBS = {
    (1e-4, 0.1, 0): (100, 150, 1000, "comprehension"),  # test 50 after train
    (1e-4, 0.1, 1): (100, 200, 1000, "comprehension"),  # exactly the delay: not more
    (1e-3, 0.1, 0): (100, 210, 1000, "grokking"),  # 110 > 100 after
    (1e-3, 0.1, 1): (50, 900, 1000, "grokking"),
    (1e-2, 0.1, 0): (50, None, 1000, "memorization"),  # ran the whole budget
    (1e-2, 0.1, 1): (50, 1010, 1200, "memorization"),  # generalized past the budget
    (1e-4, 1.0, 0): (None, None, 1000, "confusion"),
    (1e-4, 1.0, 1): (1010, None, 2000, "confusion"),  # fitted past the budget
    (1e-4, 1.0, 2): ("failed", None, None, "undecided"),  # no evaluation at all
    (1e-3, 1.0, 0): (50, None, 990, "undecided"),  # stopped 10 steps short of the budget
    (1e-3, 1.0, 1): (None, 500, 600, "comprehension"),  # generalized before fitting
    (1e-2, 1.0, 0): (100, 1000, 1000, "grokking"),  # reached on the budget's last step
    (1e-2, 1.0, 1): (100, 300, 1000, "grokking"),
    (1e-2, 1.0, 2): (0, None, 1000, "memorization"),
}
# (lr, wd) -> (majority, agreeing seeds, seeds)
CELLS = {
    (1e-4, 0.1): ("comprehension", 2, 2), (1e-3, 0.1): ("grokking", 2, 2),
    (1e-2, 0.1): ("memorization", 2, 2), (1e-4, 1.0): ("confusion", 2, 3),
    (1e-3, 1.0): ("tie", 1, 2), (1e-2, 1.0): ("grokking", 2, 3),
}


def curve(steps: np.ndarray, reach: int | None) -> np.ndarray:
    """0.5 before `reach`, 0.9 from it (exactly the threshold), 0.5 throughout when None."""
    if reach is None:
        return np.full(len(steps), 0.5)
    return np.where(steps >= reach, 0.9, 0.5)


def write_job(folder: Path, overrides: list[str], train: int | None, test: int | None,
              last: int | None) -> None:
    """A job folder as `grok sweep` leaves it: .hydra/overrides.yaml, config, metrics, summary."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\ntask:\n  name: modadd\n")
    if last is None:
        (folder / "summary.json").write_text(json.dumps({"status": "failed", "error": "OOM"}))
        return
    steps = np.arange(0, last + 1, EVAL_EVERY)
    with (folder / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "train_loss", "train_acc", "test_loss", "test_acc", "l2_norm",
                         "lr", "elapsed_s"])
        for s, a, b in zip(steps, curve(steps, train), curve(steps, test), strict=True):
            writer.writerow([int(s), 1.0, a, 1.0, b, 10.0, 1e-3, s / 100])
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "steps": last}))


def make_sweep(root: Path, jobs: dict = JOBS, extra: list[str] = ()) -> Path:
    sweep = root / "sweep"
    for (lr, wd, seed), (train, test, last, _) in jobs.items():
        overrides = [f"optimizer.lr={lr}", f"weight_decay={wd}", f"seed={seed}", *extra]
        write_job(sweep / "_".join(overrides).replace("/", "_"), overrides,
                  None if train == "failed" else train, test, last)
    (sweep / "summary.csv").write_text("job\n")  # grok sweep's table: not a job
    return sweep


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("phase")
    sweep = make_sweep(tmp)
    out = tmp / "out"
    result = grok_here("phase", f"sweep_dir={sweep}", "x=optimizer.lr", "y=weight_decay",
                       *RULE, f"out_dir={out}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_every_job_has_its_hand_classified_phase(analyzed):
    out, _ = analyzed
    rows = read_rows(out / "phase.csv")
    assert len(rows) == len(JOBS)
    for row in rows:
        key = (float(row["optimizer.lr"]), float(row["weight_decay"]), int(row["seed"]))
        train, test, last, phase = JOBS[key]
        assert row["phase"] == phase, (key, row)
        train = None if train == "failed" else train
        assert row["train_step@0.9"] == ("" if train is None else str(train)), key
        assert row["test_step@0.9"] == ("" if test is None else str(test)), key
        assert row["last_step"] == ("" if last is None else str(last)), key


def test_report_counts_cells_and_rule(analyzed):
    out, stdout = analyzed
    report = json.loads((out / "phase.json").read_text())
    expected = {p: 0 for p in ("comprehension", "grokking", "memorization", "confusion",
                               "undecided")}
    for *_, phase in JOBS.values():
        expected[phase] += 1
    assert report["counts"] == expected
    assert report["thresholds"] == {"train_acc": 0.9, "test_acc": 0.9, "budget": 1000,
                                    "grok_delay": 100}
    assert "Liu et al. 2022" in report["rule"]
    cells = {(c["optimizer.lr"], c["weight_decay"]): (c["majority"], c["agree"], c["seeds"])
             for c in report["cells"]}
    assert cells == CELLS
    assert (out / "phase.png").stat().st_size > 10_000
    assert "tie (1/2)" in stdout


def test_classify_by_hand():
    rule = Rule(0.9, 0.9, budget=100, grok_delay=10)
    assert classify(5, 15, 100, rule) == "comprehension"
    assert classify(5, 16, 100, rule) == "grokking"
    assert classify(5, None, 99, rule) == "undecided"
    assert classify(5, None, 100, rule) == "memorization"
    assert classify(None, None, 100, rule) == "confusion"
    assert classify(None, None, None, rule) == "undecided"
    assert classify(101, 101, 200, rule) == "confusion"  # both past the budget
    assert majority(["grokking", "memorization", "grokking"]) == ("grokking", 2)
    assert majority(["grokking", "memorization"]) == ("tie", 1)


def two_value_sweep(root: Path, extra: list[str] = ()) -> Path:
    jobs = {k: v for k, v in JOBS.items() if k[1] == 0.1}  # weight decay 0.1 only
    return make_sweep(root, jobs, list(extra))


BAD_INPUTS = [
    (["sweep_dir=empty", "x=optimizer.lr", "y=weight_decay"], "none of its folders is a sweep"),
    (["sweep_dir=foreign", "x=optimizer.lr", "y=weight_decay"], "none of its folders is a sweep"),
    (["sweep_dir=missing", "x=optimizer.lr", "y=weight_decay"], "sweep_dir='missing'"),
    (["sweep_dir=sweep", "x=alpha", "y=weight_decay"], "x='alpha'"),
    (["sweep_dir='sweep/optimizer.lr=0.0001_weight_decay=0.1_seed=0'", "x=optimizer.lr",
      "y=weight_decay"], "one run's folder"),
    (["sweep_dir=sweep", "x=optimizer.lr", "y=weight_decay"], "weight_decay has one value only"),
    (["sweep_dir=sweep", "x=optimizer.lr", "y=seed"], "y='seed'"),
    (["sweep_dir=sweep", "x=optimizer.lr", "y=optimizer.lr"], "y='optimizer.lr'"),
    (["sweep_dir=sweep", "x=optimizer.lr"], "y is required"),
    (["sweep_dir=sweep", "x=optimizer.lr", "y=seed", "budget=0"], "budget=0"),
    (["sweep_dir=sweep", "x=optimizer.lr", "y=seed", "test_acc=1.5"], "test_acc=1.5"),
]


@pytest.mark.parametrize("args, words", BAD_INPUTS)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign" / "run").mkdir(parents=True)
    (tmp_path / "foreign" / "run" / "metrics.csv").write_text("step,train_acc,test_acc\n")
    two_value_sweep(tmp_path)
    result = grok_here("phase", *args, f"out_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "outputs").exists()  # nor Hydra's folder for the command's log


def test_a_third_swept_key_is_refused(tmp_path):
    sweep = make_sweep(tmp_path / "a", {k: v for k, v in JOBS.items() if k[2] == 0},
                       ["task.p=23"])
    make_sweep(tmp_path / "b", {k: v for k, v in JOBS.items() if k[2] == 0}, ["task.p=31"])
    for job in (tmp_path / "b" / "sweep").iterdir():
        job.rename(sweep / f"p31_{job.name}")
    result = grok_here("phase", f"sweep_dir={sweep}", "x=optimizer.lr", "y=weight_decay",
                       f"out_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "also sweeps task.p" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_sweep_dir_through_the_real_cli(tmp_path):
    """The console script: one line, exit 2, no traceback, before any job is read."""
    result = grok("phase", "x=alpha", "y=weight_decay", f"out_dir={tmp_path / 'out'}",
                  cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines() == [
        "error: sweep_dir is required: grok phase sweep_dir=DIR x=KEY y=KEY"]
    assert not (tmp_path / "out").exists()
