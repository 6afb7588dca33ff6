"""`launcher=slurm` against a real SLURM cluster (scripts/slurm_local_cluster.sh start): a CPU
sweep equal to launcher=basic, requests the cluster cannot hold refused in one line, a scancel'ed
job recorded and continued, a requeue signal resumed at its step. Skipped without a cluster."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import grok_command, grok_env, grok_here

pytestmark = pytest.mark.slurm


def default_partition() -> tuple[str, int] | None:
    """The default partition and the CPUs of its largest node, or None without a cluster."""
    if shutil.which("sinfo") is None:
        return None
    done = subprocess.run(["sinfo", "-h", "-o", "%P %c"], capture_output=True, text=True)
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[0].endswith("*")]
    return (rows[0][0].rstrip("*"), int(rows[0][1].rstrip("+"))) if rows else None


PARTITION, CPUS = default_partition() or (None, None)
if CPUS is None:
    pytest.skip("no SLURM cluster here: sinfo is missing or gets no answer (start one with "
                "scripts/slurm_local_cluster.sh start, as root)", allow_module_level=True)

TINY = ["task=modadd", "task.p=23", "task.train_split=0.75", "data_fraction=0.5",
        "model.hidden_size=32", "model.num_heads=2", "eval_every=10", "ckpt_every=20",
        "progress=log"]
# What a CPU-cluster user types: device=cpu and sizes that fit the node.
FITS = ["launcher=slurm", "device=cpu", "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1"]
SAME_COLUMNS = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "l2_norm", "lr")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def curves(job_dir: Path) -> list[tuple[str, ...]]:
    """metrics.csv without elapsed_s (the only column a resumed run may differ in)."""
    return [tuple(row[c] for c in SAME_COLUMNS) for row in read_csv(job_dir / "metrics.csv")]


def job_dir(sweep_dir: Path, seed: int) -> Path:
    return next(path for path in sweep_dir.iterdir() if f"seed={seed}," in path.name)


def basic_sweep(tmp_path: Path, steps: int, seeds: str) -> Path:
    """The same jobs through launcher=basic, in this process."""
    sweep_dir = tmp_path / "basic"
    grok_here("sweep", "device=cpu", *TINY, f"steps={steps}", f"seed={seeds}",
              f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, check=True)
    return sweep_dir


def start_sweep(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(grok_command("sweep", *args), cwd=tmp_path, env=grok_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def running_task(sweep_dir: Path, seed: int, rows: int) -> str:
    """The SLURM id of the running task whose job folder has `rows` metrics rows."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        metrics = [p / "metrics.csv" for p in sweep_dir.glob(f"*seed={seed},*")]
        if metrics and metrics[0].exists() and len(metrics[0].read_text().splitlines()) > rows:
            out = subprocess.run(["squeue", "-h", "-r", "-t", "RUNNING", "-o", "%i"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                return out[0]
        time.sleep(0.5)
    raise AssertionError("the job never ran")


def test_a_cpu_sweep_equals_launcher_basic(tmp_path):
    sweep_dir = tmp_path / "slurm"
    result = grok_here("sweep", *FITS, *TINY, "steps=40", "seed=0,1",
                       f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    script = next(sweep_dir.glob(".submitit/*/*_submission.sh")).read_text()
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert sbatch and not [line for line in sbatch if "gpu" in line or "gres" in line]
    rows = read_csv(sweep_dir / "summary.csv")
    assert [row["status"] for row in rows] == ["completed", "completed"]
    basic = basic_sweep(tmp_path, 40, "0,1")
    for seed in (0, 1):
        assert curves(job_dir(sweep_dir, seed)) == curves(job_dir(basic, seed))


@pytest.mark.parametrize(("args", "message"), [
    ([], r"hydra\.launcher\.cpus_per_task=4 is not allowed: at most \d+ \(partition \w+'s "
         r"nodes have \d+ CPUs\)"),
    ([f"hydra.launcher.cpus_per_task={(CPUS or 0) + 1}"],
     r"hydra\.launcher\.cpus_per_task=\d+ is not allowed: at most \d+"),
    (["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=100000"],
     r"hydra\.launcher\.mem_gb=100000 is not allowed: at most \d+ \(partition \w+'s nodes "
     r"have \d+ MB\)"),
    (["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "device=auto"],
     r"hydra\.launcher\.gpus_per_node=1 is not allowed: partition \w+ has no GPUs; use "
     r"device=cpu"),
    ([*FITS[1:], "hydra.launcher.partition=gpu"],
     r"hydra\.launcher\.partition='gpu' is not allowed: one of "),
    ([*FITS[1:], "+hydra.launcher.additional_parameters.constraint=bigmem"],
     r"sbatch refused the job array: .*Invalid feature specification; change "
     r"hydra\.launcher\.additional_parameters\.constraint"),
    ([*FITS[1:], "hydra.launcher.nodes=2"],  # pending forever: squeue's reason
     r"SLURM can never start these jobs \(squeue: Partition\w+\): change hydra\.launcher\."
     r"nodes.* \(job array \d+ was cancelled\)"),
], ids=["defaults", "cpus", "mem", "gpus", "partition", "sbatch", "pending"])
def test_a_request_the_cluster_cannot_hold_ends_in_one_line(tmp_path, args, message):
    if not args and CPUS >= 4:
        pytest.skip("this node holds the default cpus_per_task=4")
    sweep_dir = tmp_path / "refused"
    started = time.monotonic()
    result = grok_here("sweep", "launcher=slurm", *args, *TINY, "steps=40", "seed=0,1",
                       f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert result.returncode == 2
    assert re.fullmatch(f"error: {message}.*", result.stderr.strip()), result.stderr
    assert time.monotonic() - started < 60  # refused, not waited on
    assert not sweep_dir.exists()  # a refusal writes nothing


def test_a_cancelled_job_is_recorded_the_rest_finish_and_the_same_command_continues(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # One task at a time: seed 0 is cancelled while it runs, seed 2 while it waits in the
    # queue (it never starts), seed 1 runs to the end.
    command = [*FITS, "hydra.launcher.array_parallelism=1", *TINY, "steps=400", "seed=0,1,2",
               f"hydra.sweep.dir={sweep_dir}"]
    sweep = start_sweep(tmp_path, *command)
    running = running_task(sweep_dir, 0, rows=3)
    array = running.split("_")[0]
    subprocess.run(["scancel", running, f"{array}_2"], check=True)
    _, stderr = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: 2 of 3 jobs failed: "), stderr
    assert f"(cancelled: SLURM job {array}_0 ended CANCELLED without a result (interrupted by " \
           "SIGTERM at step " in errors[0]
    assert f"(cancelled: SLURM job {array}_2 ended CANCELLED without a result)" in errors[0]
    rows = {row["seed"]: row for row in read_csv(sweep_dir / "summary.csv")}
    assert [rows[seed]["status"] for seed in "012"] == ["cancelled", "completed", "cancelled"]
    summary = (job_dir(sweep_dir, 0) / "summary.json").read_text()
    assert '"status": "cancelled"' in summary
    stopped = int(re.search(r"interrupted by SIGTERM at step (\d+)", summary).group(1))
    job_log = next(sweep_dir.glob(".submitit/*_0/*_log.err")).read_text()
    assert (f"interrupted by SIGTERM at step {stopped} (checkpoint saved); to continue: grok "
            f"sweep ") in job_log and f"hydra.sweep.dir={sweep_dir}\n" in job_log

    again = grok_here("sweep", *command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    run_log = (job_dir(sweep_dir, 0) / "run.log").read_text()
    assert f"checkpoints/last.pt at step {stopped}" in run_log  # continued where it stopped
    assert [row["status"] for row in read_csv(sweep_dir / "summary.csv")] == ["completed"] * 3
    basic = basic_sweep(tmp_path, 400, "0,2")
    for seed in (0, 2):
        assert curves(job_dir(sweep_dir, seed)) == curves(job_dir(basic, seed))


def test_the_slurm_sweep_script_runs_a_preset_and_its_analysis(tmp_path):
    """scripts/slurm_sweep.sh as the README gives it, on this cluster's partition, with the
    preset shortened and the sizes of this node."""
    sweep_dir = tmp_path / "cds"
    env = {**grok_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PARTITION": PARTITION, "SWEEP_DIR": str(sweep_dir)}
    script = Path(__file__).parents[1] / "scripts" / "slurm_sweep.sh"
    result = subprocess.run([str(script), "cds_modadd_cpu", *FITS[1:], "steps=60",
                             "hydra.sweeper.params.seed=0"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 4 and {row["status"] for row in rows} == {"completed"}
    assert len(read_csv(sweep_dir / "cds" / "cds_runs.csv")) == 4


@pytest.mark.slow
def test_a_requeue_signal_checkpoints_and_the_job_resumes_at_that_step(tmp_path):
    """SLURM's USR2 before a time limit (sent here with scancel), submitit's requeue: the job
    resumes at the signal's step, equal to an uninterrupted run. SLURM holds a requeued job
    120 s before it may start again."""
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(tmp_path, *FITS, *TINY, "steps=1500", "seed=0",
                        f"hydra.sweep.dir={sweep_dir}")
    task = running_task(sweep_dir, 0, rows=3)
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    _, stderr = sweep.communicate(timeout=400)
    assert sweep.returncode == 0, stderr
    log = next(sweep_dir.glob(".submitit/*/*_log.err")).read_text()
    stopped = re.search(r"interrupted by SIGUSR2 at step (\d+) \(checkpoint saved\); to "
                        r"continue: grok sweep .*hydra\.sweep\.dir=(\S+)", log)
    assert stopped and stopped.group(2) == str(sweep_dir), log
    assert "Requeued job" in log
    run_log = (job_dir(sweep_dir, 0) / "run.log").read_text()
    assert f"checkpoints/last.pt at step {stopped.group(1)}" in run_log
    assert curves(job_dir(sweep_dir, 0)) == curves(job_dir(basic_sweep(tmp_path, 1500, "0"), 0))


def test_a_purged_array_counts_as_left_the_queue_and_partitions_come_from_sbatchs_sources(
        monkeypatch):
    """squeue's "Invalid job id" (an array SLURM has purged) is an empty queue, not a busy
    controller to ask again forever; the partition is read where sbatch reads it, and a list
    of partitions is left to sbatch."""
    from grok_cli.errors import GrokError
    from grok_cli.launchers.slurm import check_partition, queue_states

    assert queue_states("987654321") == {}
    monkeypatch.setenv("SBATCH_PARTITION", "gpu")
    with pytest.raises(GrokError, match=r"partition='gpu' is not allowed: one of "):
        check_partition({"cpus_per_task": 1})
    check_partition({"partition": f"gpu,{PARTITION}", "cpus_per_task": 1})  # sbatch decides
    monkeypatch.delenv("SBATCH_PARTITION")
    with pytest.raises(GrokError, match=r"partition='nope' is not allowed"):
        check_partition({"additional_parameters": {"partition": "nope"}})
