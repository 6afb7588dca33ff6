"""`grok run` through the real CLI: the run folder contract, resume, bad input, divergence."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import time

import pytest
import torch
from conftest import TINY, grok, grok_command, grok_env, grok_here, read_rows, wait_for_step

from grok_cli.errors import GrokError
from grok_cli.runfolder.metrics import COLUMNS, first_step, read_metrics
from grok_cli.runfolder.runs import Run
from grok_cli.runfolder.sweep import find_job_dirs
from grok_cli.training.evaluation import metrics_rows
from grok_cli.training.run import run_experiment


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


@pytest.mark.slow
def test_default_run_folders_are_timestamped_and_never_shared(tmp_path):
    procs = [subprocess.Popen(grok_command("run", *TINY, "steps=1"), cwd=tmp_path,
                              env=grok_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    folders = list((tmp_path / "outputs" / "run").glob("*/*"))
    assert len(folders) == 2 and all((f / "summary.json").exists() for f in folders)


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_finished_run_is_not_trained_again(tmp_path):
    run = tmp_path / "run"
    grok("run", *TINY, "steps=10", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    before = (run / "metrics.csv").read_text()
    result = grok("run", *TINY, "steps=10", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    assert "already completed" in result.stderr
    assert (run / "metrics.csv").read_text() == before


def test_corrupt_checkpoint_is_refused(run_cfg, tmp_path):
    run = tmp_path / "run"
    assert run_experiment(run_cfg(*TINY), run) == "completed"
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GrokError, match="corrupt"):
        run_experiment(run_cfg(*TINY, "steps=60"), run)


def test_nonfinite_loss_stops_as_diverged_keeping_metrics_and_checkpoint(tmp_path):
    run = tmp_path / "run"
    result = grok_here("run", *TINY, "steps=200", "eval_every=1", "ckpt_every=1", "optimizer=sgd",
                  "optimizer.lr=1e4", "optimizer.momentum=0.9", f"hydra.run.dir={run}",
                  cwd=tmp_path)
    assert result.returncode == 3 and "Traceback" not in result.stderr  # README: exit codes
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["error"]
    rows = read_rows(run / "metrics.csv")
    last_step = int(rows[-1]["step"])
    assert last_step < 200
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] < last_step  # the last good one, before the non-finite evaluation
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_finished_folder_refuses_another_config_and_keeps_its_results(run_cfg, tmp_path):
    run = tmp_path / "run"
    assert run_experiment(run_cfg(*TINY), run) == "completed"
    summary = (run / "summary.json").read_text()
    with pytest.raises(GrokError, match=r"does not match.*alpha"):
        run_experiment(run_cfg(*TINY, "alpha=5"), run)
    with pytest.raises(GrokError, match="checkpoint's step 40"):
        run_experiment(run_cfg(*TINY, "steps=20"), run)
    assert (run / "summary.json").read_text() == summary  # the finished run's record stays


# ---------------------------------------------------------------- numbers a researcher can trust


def assert_exact_fractions(rows, column, n):
    """Each accuracy is a count of n written exactly: acc × n an integer to 1e-9, and the value
    the very double of count / n (so a threshold of count / n is reached, not missed)."""
    for row in rows:
        count = round(row[column] * n)
        assert abs(row[column] * n - count) < 1e-9, (row["step"], column, row[column])
        assert row[column] == count / n, (row["step"], column, row[column])


@pytest.mark.parametrize("batch_size", ["null", "100"])  # train accuracy: training forward / eval
def test_accuracies_are_exact_fractions_of_the_split(run_cfg, tmp_path, batch_size):
    """1,000 training samples: 700 correct is written as 0.7, which a 0.7 threshold reaches
    (in float32 it was 0.699999988, so the step came one evaluation late)."""
    cfg = run_cfg("task.p=47", "task.train_split=0.5", "train_size=1000",
                  "model.hidden_size=32", "model.num_heads=2", "steps=30", "eval_every=10",
                  f"batch_size={batch_size}", "progress=log")
    assert run_experiment(cfg, tmp_path / "run") == "completed"
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["n_train"], summary["n_test"]) == (1000, 2209 - 1104)
    assert_exact_fractions(rows, "train_acc", 1000)
    assert_exact_fractions(rows, "test_acc", summary["n_test"])
    for row in rows:  # each count, as a threshold, is first reached where the count first is
        count = round(row["train_acc"] * 1000)
        expected = next(r["step"] for r in rows if round(r["train_acc"] * 1000) >= count)
        assert first_step(rows, "train_acc", count / 1000) == expected

    (row,) = metrics_rows(10, (torch.tensor(0.5), torch.tensor([700])),
                          (torch.tensor(0.5), torch.tensor([9])), torch.tensor(1.0), [[1000]],
                          [10])
    assert row["train_acc"] >= 0.7 and row["test_acc"] >= 0.9
    assert first_step([row], "train_acc", 0.7) == 10


def write_lines(path, *lines):
    path.write_text("step,train_loss,train_acc,test_loss,test_acc,l2_norm,lr,elapsed_s\r\n"
                    + "".join(lines))
    return path


def test_read_metrics_drops_only_a_cut_short_last_row(tmp_path, caplog):
    full = "0,2.5,0.25,2.75,0.5,8.0,0.001,0.1\r\n"
    second = "10,2.0,0.5,2.5,0.75,8.5,0.001,0.2\r\n"
    complete = write_lines(tmp_path / "a.csv", full, second)
    assert read_metrics(complete) == [
        {"step": 0, "train_loss": 2.5, "train_acc": 0.25, "test_loss": 2.75, "test_acc": 0.5,
         "l2_norm": 8.0, "lr": 0.001, "elapsed_s": 0.1},
        {"step": 10, "train_loss": 2.0, "train_acc": 0.5, "test_loss": 2.5, "test_acc": 0.75,
         "l2_norm": 8.5, "lr": 0.001, "elapsed_s": 0.2}]
    assert isinstance(read_metrics(complete)[0]["step"], int)
    # A kill mid-append: fields missing, or all there but the last one cut (no line end).
    for torn in ("20,1.5,0.7", "20,1.5,0.75,2.25,0.75,9.0,0.001,0.3"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="grok"):
            rows = read_metrics(write_lines(tmp_path / "b.csv", full, second, torn))
        assert [r["step"] for r in rows] == [0, 10]
        assert "incomplete last row (line 4" in caplog.text
    damaged = write_lines(tmp_path / "c.csv", full, "10,2.0,0.5\r\n", second)
    with pytest.raises(GrokError, match="line 3 is damaged"):
        read_metrics(damaged)


def test_a_torn_last_row_is_dropped_and_the_run_resumes_exactly(run_cfg, tmp_path, caplog):
    args = [*TINY, "ckpt_every=20", "batch_size=64"]
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert run_experiment(run_cfg(*args, "steps=40"), straight) == "completed"
    assert run_experiment(run_cfg(*args, "steps=20"), run) == "completed"
    # As if killed while appending step 40's row, its checkpoint still the one at step 20.
    row_30 = (straight / "metrics.csv").read_text().splitlines()[4]
    with (run / "metrics.csv").open("a") as handle:
        handle.write(row_30 + "\r\n" + "40,3.05,0.0")
    (run / "summary.json").unlink()
    with caplog.at_level(logging.WARNING, logger="grok"):
        assert run_experiment(run_cfg(*args, "steps=40"), run) == "completed"
    assert "incomplete last row" in caplog.text
    expected, got = read_rows(straight / "metrics.csv"), read_rows(run / "metrics.csv")
    assert [r["step"] for r in got] == ["0", "10", "20", "30", "40"]
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in got] == [
        {k: v for k, v in r.items() if k != "elapsed_s"} for r in expected]


# ---------------------------------------------------------------- files that cannot be lost


def test_one_writer_per_run_folder_and_a_killed_holder_blocks_nothing(run_cfg, tmp_path):
    """The holder is a real `grok run`; the second writer and the resume run in-process (the
    lock is the OS's, per open file: a second process and this one are refused alike)."""
    run = tmp_path / "run"
    args = [*TINY, "steps=100000", "ckpt_every=20"]
    holder = subprocess.Popen(grok_command("run", *args, f"hydra.run.dir={run}"), cwd=tmp_path,
                              env=grok_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for_step(run, 20, holder)
        record = (run / ".hydra" / "config.yaml").read_bytes()
        with pytest.raises(GrokError) as refused:
            run_experiment(run_cfg(*args), run)
        assert holder.poll() is None  # still training, undisturbed
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock with it
        holder.wait()
    assert str(refused.value).startswith(f"run folder {run} is in use")
    assert f"pid {holder.pid} on host {socket.gethostname()}" in str(refused.value)
    assert (run / ".hydra" / "config.yaml").read_bytes() == record
    assert not (run / "summary.json").exists()

    step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert run_experiment(run_cfg(*TINY, f"steps={step + 20}", "ckpt_every=20"), run) == (
        "completed")
    assert read_metrics(run / "metrics.csv")[-1]["step"] == step + 20


def test_the_record_is_hydras_own_and_a_refused_run_keeps_it(tmp_path):
    """.hydra/ holds the three files Hydra writes (here compared with Hydra's own copy in
    .hydra_own/), written by an accepted run only: a refused one leaves what was trained."""
    run = tmp_path / "run"
    grok_here("run", *TINY, "steps=10", f"hydra.run.dir={run}", "hydra.output_subdir=.hydra_own",
         cwd=tmp_path, check=True)
    names = ("config.yaml", "overrides.yaml", "hydra.yaml")
    record = {name: (run / ".hydra" / name).read_bytes() for name in names}
    assert record == {name: (run / ".hydra_own" / name).read_bytes() for name in names}

    refused = grok_here("run", *TINY, "steps=10", "seed=5", f"hydra.run.dir={run}", cwd=tmp_path)
    assert refused.returncode == 2 and "seed: 0 in the checkpoint, 5 here" in refused.stderr
    assert {name: (run / ".hydra" / name).read_bytes() for name in names} == record
    assert Run.load(run).seed == 0  # what `grok cds` reads
    assert find_job_dirs(tmp_path) == [run]  # what summary.csv counts


def test_a_run_refused_before_training_leaves_no_folder(tmp_path):
    """Only what this command created goes (also the bad values above, into a new folder)."""
    result = grok_here("run", *TINY, "alpha=0", cwd=tmp_path)
    assert result.returncode == 2 and "error: alpha=0" in result.stderr
    assert not (tmp_path / "outputs").exists()  # no outputs/run/<date>/<time>/ left behind
    mine = tmp_path / "mine"  # a folder the user made is never removed
    mine.mkdir()
    result = grok_here("run", *TINY, "alpha=0", f"hydra.run.dir={mine}", cwd=tmp_path)
    assert result.returncode == 2 and mine.is_dir()
