"""`grok sweep` through the real CLI: a grid with a failing job, summary.csv, `grok cds` on it,
resuming into the same folder, summarize-only, and the parallel local launcher."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import grok, grok_here
from test_cds import compose_cds

from grok_cli.analysis.cds.command import main
from grok_cli.cli import conf_dir

# A p = 23 modular task small enough to train in seconds, yet its train accuracy climbs past
# several thresholds within 150 steps. Every task key is pinned so default changes don't matter.
SMALL = ["task.p=23", "task.train_split=0.75", "model.hidden_size=32", "model.num_heads=2",
         "steps=150", "eval_every=10", "ckpt_every=50", "progress=log"]
# 9999 > the 396 training pairs: those two jobs fail, the other four must still complete.
GRID = ["train_size=100,200,9999", "seed=0,1"]
THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
EPSILON = 0.1  # low enough that these short runs decide the critical data size either way


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def first_step(rows: list[dict[str, str]], column: str, threshold: float) -> int | None:
    return next((int(r["step"]) for r in rows if float(r[column]) >= threshold), None)


def as_int(text: str) -> int | None:
    return None if text == "" else int(float(text))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The grid above swept once; (cwd, sweep folder, the CompletedProcess)."""
    cwd = tmp_path_factory.mktemp("sweep")
    sweep_dir = cwd / "grid"
    result = grok_here("sweep", *SMALL, *GRID, f"hydra.sweep.dir={sweep_dir}", cwd=cwd)
    return cwd, sweep_dir, result


def test_a_failing_job_never_stops_the_others(sweep):
    _, sweep_dir, result = sweep
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # One line at the end names the failed jobs and why.
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 6 jobs failed:") and "train_size=9999" in last
    assert "training split" in last
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 6
    by_status = {(r["train_size"], r["seed"]): r["status"] for r in rows}
    assert by_status == {(size, seed): "failed" if size == "9999" else "completed"
                         for size in ("100", "200", "9999") for seed in ("0", "1")}
    for row in rows:
        job = sweep_dir / row["job"]
        summary = json.loads((job / "summary.json").read_text())
        assert row["status"] == summary["status"]
        # Folder named by the job's own overrides, which summary.csv lists.
        assert f"train_size={row['train_size']}" in row["job"]
        assert row["overrides"].split() == [
            line[2:] for line in (job / ".hydra" / "overrides.yaml").read_text().splitlines()]
        if row["status"] == "failed":
            assert "9999" in row["error"] and summary["error"] == row["error"]
        else:
            assert as_int(row["n_train"]) == int(row["train_size"]) == summary["n_train"]
            assert as_int(row["final_step"]) == 150
            metrics = read_csv(job / "metrics.csv")
            assert as_int(row["memorization_step"]) == first_step(metrics, "train_acc", 0.99)
            assert float(row["final_test_acc"]) == pytest.approx(float(metrics[-1]["test_acc"]))


def test_cds_tables_match_the_runs_metrics(sweep):
    cwd, sweep_dir, _ = sweep
    out = cwd / "cds"
    main(compose_cds(f"sweep_dir={sweep_dir}", f"out_dir={out}", f"epsilon={EPSILON}",
                     "plots=false"))
    runs = read_csv(out / "cds_runs.csv")
    assert len(runs) == 4  # the failed jobs have no metrics and are left out
    converged: dict[int, list[float]] = {}
    for run in runs:
        metrics = read_csv(Path(run["run_dir"]) / "metrics.csv")
        for split in ("train", "test"):
            for t in THRESHOLDS:
                assert as_int(run[f"{split}_step@{t:g}"]) == first_step(
                    metrics, f"{split}_acc", t), (run["run_dir"], split, t)
        assert as_int(run["memorization_step"]) == first_step(metrics, "train_acc", 0.99)
        # The runs' own thresholds.generalize (0.95), as in summary.json; EPSILON is test_step@0.1.
        assert as_int(run["generalization_step"]) == first_step(metrics, "test_acc", 0.95)
        tail = metrics[-math.ceil(len(metrics) / 10):]
        acc = sum(float(r["test_acc"]) for r in tail) / len(tail)
        assert float(run["converged_test_acc"]) == pytest.approx(acc)
        converged.setdefault(int(run["data_size"]), []).append(acc)
    assert sorted(converged) == [100, 200] and all(len(v) == 2 for v in converged.values())
    reached = [size for size, accs in converged.items() if sum(accs) / 2 >= EPSILON]
    report = json.loads((out / "cds.json").read_text())
    assert report["critical_data_size"] == (min(reached) if reached else None)
    assert set(report["regimes"]) == {"100", "200"}


def test_rerun_skips_finished_jobs_and_adds_new_ones(sweep, tmp_path):
    cwd, shared, _ = sweep
    # Its own copy: the other tests read the shared sweep folder as the first run left it.
    sweep_dir = tmp_path / "grid"
    shutil.copytree(shared, sweep_dir)
    jobs = {row["job"]: row for row in read_csv(sweep_dir / "summary.csv")}
    done = [sweep_dir / job for job, row in jobs.items() if row["status"] == "completed"]
    before = {job: (job / "metrics.csv").read_bytes() for job in done}
    # An interrupted job: its summary.json is gone but its checkpoint is there.
    (done[0] / "summary.json").unlink()
    # The same grid plus one more train size: existing folders must not shift.
    result = grok_here("sweep", *SMALL, "train_size=50,100,200,9999", "seed=0,1",
                  f"hydra.sweep.dir={sweep_dir}", cwd=cwd)
    assert result.returncode == 1  # the 9999 jobs fail again
    assert result.stderr.count("run already completed") == 3
    assert f"resuming from {done[0] / 'checkpoints' / 'last.pt'} at step 150" in result.stderr
    after = {job: (job / "metrics.csv").read_bytes() for job in done}
    assert {job: after[job] for job in done[1:]} == {job: before[job] for job in done[1:]}
    # The resumed job re-evaluates its last step: the same numbers, a new elapsed_s.
    strip = [{k: v for k, v in r.items() if k != "elapsed_s"}
             for r in read_csv(done[0] / "metrics.csv")]
    old = [{k: v for k, v in r.items() if k != "elapsed_s"}
           for r in csv.DictReader(before[done[0]].decode().splitlines())]
    assert strip == old
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 8
    new = [r for r in rows if r["train_size"] == "50"]
    assert [r["status"] for r in new] == ["completed", "completed"]
    assert {r["job"] for r in rows} >= set(jobs)


def test_summarize_only_rebuilds_the_table_without_running(sweep, tmp_path):
    cwd, shared, _ = sweep
    sweep_dir = tmp_path / "grid"
    shutil.copytree(shared, sweep_dir)
    table = sweep_dir / "summary.csv"
    expected = read_csv(table)
    table.unlink()
    # an analysis written inside a job (grok pathways/fourier hydra.run.dir=JOB/...) is no job
    job = next(sweep_dir.rglob("metrics.csv")).parent
    (job / "analysis" / ".hydra").mkdir(parents=True)
    (job / "analysis" / ".hydra" / "overrides.yaml").write_text("- out_dir=x\n")
    mtimes = {p: p.stat().st_mtime for p in sweep_dir.rglob("metrics.csv")}
    result = grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={sweep_dir}",
                       cwd=cwd)
    assert result.returncode == 1 and "jobs failed" in result.stderr
    assert read_csv(table) == expected
    assert {p: p.stat().st_mtime for p in sweep_dir.rglob("metrics.csv")} == mtimes

    missing = grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={cwd / 'nope'}",
                   cwd=cwd)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("error: hydra.sweep.dir=")


@pytest.mark.slow
def test_local_launcher_runs_jobs_in_parallel_processes(tmp_path):
    sweep_dir = tmp_path / "local"
    result = grok("sweep", *SMALL, "steps=20", "train_size=100", "seed=0,1", "launcher=local",
                  "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
                  check=True)
    assert "Joblib.Parallel(n_jobs=2,backend=loky" in result.stdout
    assert "is launching 2 jobs" in result.stdout
    rows = read_csv(sweep_dir / "summary.csv")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert sorted(r["seed"] for r in rows) == ["0", "1"]


SWEEPS = sorted(p.stem for p in (conf_dir() / "sweep").glob("*.yaml"))


@pytest.mark.parametrize("preset", SWEEPS)
def test_every_sweep_preset_composes(preset):
    from hydra import compose, initialize_config_dir
    from hydra.types import RunMode

    experiment = {"cds_imdb": "cds_imdb", "modelwise_imdb": "cds_imdb"}.get(preset)
    if experiment and not (conf_dir() / "experiment" / f"{experiment}.yaml").exists():
        pytest.skip(f"experiment={experiment} not in conf/ yet")
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(config_name="sweep", overrides=[f"sweep={preset}"],
                      return_hydra_config=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN and cfg.hydra.sweeper.params
    if preset == "cds_modadd":
        assert cfg.hydra.sweeper.params.train_size == "range(1000,10000,500)"  # 1000 ... 9500
        assert cfg.task.p == 113 and cfg.task.train_split == 0.75


def test_job_folder_names_are_deterministic_and_short():
    from grok_cli.sweep import MAX_DIRNAME, job_dirname

    assert job_dirname("seed=0,train_size=1000") == "seed=0,train_size=1000"
    assert job_dirname("") == "defaults"
    assert "/" not in job_dirname("task.path=/data/x")
    long = ",".join(f"key{i}={i}" for i in range(100))  # 879 characters
    digest = hashlib.sha1(long.encode()).hexdigest()[:12]  # 7d97668bef39
    assert job_dirname(long) == long[:MAX_DIRNAME - 13] + "-" + digest
    assert len(job_dirname(long)) == MAX_DIRNAME == 200
    assert job_dirname(long + ",x=1").endswith("-" + hashlib.sha1(
        (long + ",x=1").encode()).hexdigest()[:12])


def test_job_device_spreads_only_auto_over_several_gpus(monkeypatch):
    import torch

    from grok_cli.sweep import job_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [job_device("auto", n) for n in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert job_device("cpu", 1) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert job_device("auto", 1) == "auto"


def test_a_presets_grid_over_an_excluded_key_is_refused():
    """Jobs that differ only in a key kept out of folder names would share one folder."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from grok_cli.errors import GrokError
    from grok_cli.sweep import check_grid_folders

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(config_name="sweep", overrides=["sweep=cds_modadd_cpu"],
                      return_hydra_config=True)
    check_grid_folders(cfg)  # train_size x seed: every job its own folder
    with open_dict(cfg):
        cfg.hydra.sweeper.params.device = "cpu,cuda"
    with pytest.raises(GrokError, match="device=cpu,cuda is not allowed: .*share one folder"):
        check_grid_folders(cfg)


def test_sigterm_ends_a_sweep_with_its_table_and_the_same_command_continues(tmp_path):
    """What SLURM sends before a time limit: the running job checkpoints, summary.csv lists
    what is done, exit 143, and the last line says how to continue."""
    import signal
    import subprocess
    import time

    from conftest import grok_command, grok_env, wait_for_step

    sweep_dir = tmp_path / "grid"
    args = ["sweep", *SMALL, "steps=100000", "ckpt_every=50", "train_size=100,200",
            f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(grok_command(*args), cwd=tmp_path, env=grok_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list(sweep_dir.glob("*/metrics.csv")) and time.time() < deadline:
            time.sleep(0.05)
        (first,) = [path.parent for path in sweep_dir.glob("*/metrics.csv")]
        wait_for_step(first, 20, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave a 100,000-step sweep behind when the test fails
    assert proc.returncode == 143 and "Traceback" not in stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert [(r["job"], r["status"]) for r in rows] == [(first.name, "interrupted")]
    assert "train_size=100" in first.name
    assert f"hydra.sweep.dir={sweep_dir}" in stderr  # how to continue
