"""launcher=slurm's pieces that need no cluster: sbatch's refusals read as launcher keys, sinfo's
time limits, a job gone from the queue recorded in its folder."""

from __future__ import annotations

import json

import pytest

from grok_cli.launchers import slurm
from grok_cli.runfolder.sweep import find_job_dirs, record_lost_job, write_sweep_summary


@pytest.mark.parametrize(("stderr", "key"), [
    ("sbatch: error: Invalid generic resource (gres) specification", "gpus_per_node"),
    ("sbatch: error: invalid partition specified: gpu\nsbatch: error: Batch job submission "
     "failed: Invalid partition name specified", "partition"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition "
     "combination specified", "additional_parameters.account"),
    ("sbatch: error: Memory specification can not be satisfied", "mem_gb"),
])
def test_an_sbatch_refusal_names_the_launcher_key(stderr, key):
    message = str(slurm.sbatch_refusal(stderr))
    assert message.startswith("sbatch refused the job array: ")
    assert message.endswith(f"; change hydra.launcher.{key}")
    assert "\n" not in message and "sbatch: error:" not in message


@pytest.mark.parametrize(("limit", "minutes"), [
    ("infinite", float("inf")), ("30", 30), ("30:00", 30), ("2:00:00", 120),
    ("1-00:00:00", 1440), ("2-12:30:00", 2 * 1440 + 12 * 60 + 30)])
def test_sinfo_time_limits_in_minutes(limit, minutes):
    assert slurm.minutes(limit) == minutes


def test_a_job_gone_from_the_queue_is_recorded_and_counted(tmp_path):
    never_started = tmp_path / "seed=1"
    stopped = tmp_path / "seed=0"
    stopped.mkdir()
    (stopped / ".hydra").mkdir()
    (stopped / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    (stopped / "summary.json").write_text(json.dumps(
        {"status": "interrupted", "steps": 40, "error": "interrupted by SIGTERM at step 12"}))
    record_lost_job(stopped, ["seed=0"], "cancelled", "SLURM job 7_0 ended CANCELLED")
    record_lost_job(never_started, ["seed=1"], "failed", "SLURM job 7_1 left the queue")
    assert json.loads((stopped / "summary.json").read_text()) == {
        "status": "cancelled", "steps": 40,
        "error": "SLURM job 7_0 ended CANCELLED (interrupted by SIGTERM at step 12)"}
    assert find_job_dirs(tmp_path) == [stopped, never_started]
    rows = write_sweep_summary(tmp_path)
    assert [(row["status"], row["seed"]) for row in rows] == [("cancelled", 0), ("failed", 1)]


def test_a_completed_job_is_never_marked_lost(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed"}))
    record_lost_job(tmp_path, ["seed=0"], "failed", "gone")
    assert json.loads((tmp_path / "summary.json").read_text()) == {"status": "completed"}


def test_a_lost_job_with_a_torn_summary_is_recorded_not_a_traceback(tmp_path):
    (tmp_path / "summary.json").write_text('{"status": "interr')  # killed mid-write by hand
    record_lost_job(tmp_path, ["seed=0"], "failed", "SLURM job 7_0 ended NODE_FAIL")
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "status": "failed", "error": "SLURM job 7_0 ended NODE_FAIL"}
