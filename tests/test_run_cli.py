"""`grok run` through the real CLI: the run folder contract, resume, bad input, divergence."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time

import pytest
import torch
from conftest import TINY, grok, grok_command, grok_env

from grok_cli.training.records import COLUMNS


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_writes_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    result = grok("run", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    assert "Traceback" not in result.stderr
    rows = read_rows(run / "metrics.csv")
    assert list(rows[0])[: len(COLUMNS)] == COLUMNS
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30, 40]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 40
    assert summary["n_train"] == round(0.5 * 396) and summary["n_test"] == 529 - 396
    assert summary["final"]["step"] == 40
    assert summary["converged_test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    assert summary["best_test_acc"] == pytest.approx(max(float(r["test_acc"]) for r in rows))
    memorized = [int(r["step"]) for r in rows if float(r["train_acc"]) >= 0.99]
    assert summary["memorization_step"] == (memorized[0] if memorized else None)
    for key in ("wall_s", "steps_per_s", "device", "error", "generalization_step"):
        assert key in summary
    assert (run / "curves.png").stat().st_size > 0
    assert (run / ".hydra" / "config.yaml").exists()
    assert "step 40" in (run / "run.log").read_text()  # plain progress lines, no bar
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 40


def test_default_run_folders_are_timestamped_and_never_shared(tmp_path):
    procs = [subprocess.Popen(grok_command("run", *TINY, "steps=1"), cwd=tmp_path,
                              env=grok_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    folders = list((tmp_path / "outputs" / "run").glob("*/*"))
    assert len(folders) == 2 and all((f / "summary.json").exists() for f in folders)


def test_killed_run_resumes_to_the_same_numbers(tmp_path):
    args = [*TINY, "steps=120", "ckpt_every=30", "batch_size=64"]  # minibatch: RNG matters too
    straight = tmp_path / "straight"
    grok("run", *args, f"hydra.run.dir={straight}", cwd=tmp_path, check=True)

    resumed = tmp_path / "resumed"
    proc = subprocess.Popen(grok_command("run", *args, f"hydra.run.dir={resumed}"),
                            cwd=tmp_path, env=grok_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill mid-run: after a checkpoint, rows beyond it
        rows = read_rows(resumed / "metrics.csv") if (resumed / "metrics.csv").exists() else []
        if rows and int(rows[-1]["step"]) >= 50:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (resumed / "summary.json").exists()
    grok("run", *args, f"hydra.run.dir={resumed}", cwd=tmp_path, check=True)

    expected, got = read_rows(straight / "metrics.csv"), read_rows(resumed / "metrics.csv")
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for a, b in zip(expected, got, strict=True):
        assert {k: v for k, v in a.items() if k != "elapsed_s"} == {
            k: v for k, v in b.items() if k != "elapsed_s"}
    assert json.loads((resumed / "summary.json").read_text())["status"] == "completed"


def test_a_finished_run_is_not_trained_again(tmp_path):
    run = tmp_path / "run"
    grok("run", *TINY, "steps=10", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    before = (run / "metrics.csv").read_text()
    result = grok("run", *TINY, "steps=10", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    assert "already completed" in result.stderr
    assert (run / "metrics.csv").read_text() == before


BAD_INPUTS = [
    (["data_fraction=0"], "data_fraction"),
    (["data_fraction=1.5"], "data_fraction"),
    (["alpha=0"], "alpha"),
    (["alpha=-2"], "alpha"),
    (["steps=0"], "steps"),
    (["task.p=21"], "task.p"),
    (["task.p=2"], "task.p"),
    (["train_size=100000"], "train_size"),
    (["task.op=pow"], "task.op"),
    (["device=tpu"], "device"),
    (["save_every=10"], "save_every"),
    (["ckpt_every=15"], "ckpt_every"),
    (["model.num_heads=3"], "model.num_heads"),
    (["thresholds.memorize=abc"], "thresholds.memorize"),
    (["optimizer.lr=abc"], "optimizer.lr"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_INPUTS)
def test_bad_values_get_one_clear_line(tmp_path, overrides, key):
    result = grok("run", *TINY, *overrides, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and key in errors[0] and "allowed" in errors[0], result.stderr


@pytest.mark.parametrize("group", ["task", "model", "optimizer"])
def test_unknown_group_choice_lists_the_available_ones(tmp_path, group):
    result = grok("run", f"{group}=nope", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "Available options" in result.stderr and f"'{group}'" in result.stderr


def test_corrupt_or_mismatched_checkpoint_is_refused(tmp_path):
    run = tmp_path / "run"
    grok("run", *TINY, "steps=40", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    mismatched = grok("run", *TINY, "steps=60", "seed=7", f"hydra.run.dir={run}", cwd=tmp_path)
    assert mismatched.returncode != 0 and "Traceback" not in mismatched.stderr
    assert "seed" in mismatched.stderr and "does not match" in mismatched.stderr

    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    corrupt = grok("run", *TINY, "steps=60", f"hydra.run.dir={run}", cwd=tmp_path)
    assert corrupt.returncode != 0 and "Traceback" not in corrupt.stderr
    assert "corrupt" in corrupt.stderr


def test_nonfinite_loss_stops_as_diverged_keeping_metrics_and_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = grok("run", *TINY, "steps=200", "eval_every=1", "ckpt_every=1", "optimizer=sgd",
                  "optimizer.lr=1e4", "optimizer.momentum=0.9", f"hydra.run.dir={run}",
                  cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["error"]
    rows = read_rows(run / "metrics.csv")
    last_step = int(rows[-1]["step"])
    assert last_step < 200
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] < last_step  # the last good one, before the non-finite evaluation
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_finished_folder_refuses_another_config_and_keeps_its_results(tmp_path):
    run = tmp_path / "run"
    grok("run", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    summary = (run / "summary.json").read_text()
    other = grok("run", *TINY, "alpha=5", f"hydra.run.dir={run}", cwd=tmp_path)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "does not match" in other.stderr and "alpha" in other.stderr
    fewer = grok("run", *TINY, "steps=20", f"hydra.run.dir={run}", cwd=tmp_path)
    assert fewer.returncode != 0 and "checkpoint's step 40" in fewer.stderr
    assert (run / "summary.json").read_text() == summary  # the finished run's record stays
