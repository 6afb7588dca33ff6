"""`launcher=slurm`: hydra-submitit-launcher's job array, with what a cluster user meets first.

- `device=cpu` requests no GPUs (`gpus_per_node` is not sent).
- A request no node of the partition can hold (`cpus_per_task`, `mem_gb`, `timeout_min`,
  `gpus_per_node`, read with `sinfo`) is refused before anything is submitted, and so is an
  sbatch refusal: one `error:` line naming the launcher key. A task left pending for a reason
  that never clears (squeue's PartitionConfig, ReqNodeNotAvail...) cancels the array, likewise.
- The sweep waits on the array itself, through `squeue` (states of ended jobs are kept there
  for MinJobAge, 300 s by default; `sacct` is not needed): a task that left the queue without a
  result (scancel, node failure, out of memory) is recorded in its job folder
  (`status: cancelled` / `failed`, grok_cli.runfolder.sweep.record_lost_job) and the others
  are waited for; the sweep then writes summary.csv and exits 1, and the same command
  continues it.
- The job script exports GROK_CONTINUE_COMMAND, the `grok sweep` command that continues the
  sweep, so an interrupted job's "to continue:" line names it, not the submitit worker.
- A time-limit or preemption signal (submitit's USR2) checkpoints at the current step
  (grok_cli.training.signals) before submitit requeues the job, so it resumes exactly there.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import DictConfig, OmegaConf

from grok_cli.errors import GrokError, did_you_mean
from grok_cli.training.signals import CONTINUE_ENV, Interrupted, continue_command

log = logging.getLogger("grok")

KEY = "hydra.launcher"
SQUEUE_EVERY_S = 10.0
# Pending reasons SLURM never clears by itself (the request exceeds what the partition offers)
# -> the launcher key to change.
NEVER_REASONS = {"PartitionNodeLimit": "nodes", "PartitionTimeLimit": "timeout_min",
                 "PartitionConfig": "nodes, .cpus_per_task, .mem_gb or .gpus_per_node",
                 "BadConstraints": "cpus_per_task, .mem_gb or .additional_parameters"}
# (ReqNodeNotAvail is not among them: nodes down, drained or reserved come back.)
# States of a task that will not run again; any other state (held, stopped, requeued...) waits.
FINISHED_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE"}
# A task squeue calls COMPLETED (or no longer lists) may have a result file that a network file
# system shows late: it is waited for this long before the task counts as lost (as submitit).
RESULT_GRACE_S = 30.0
# Words of sbatch's refusals -> the launcher key to change.
SBATCH_KEYS = (("generic resource", "gpus_per_node"), ("gres", "gpus_per_node"),
               ("account", "additional_parameters.account"), ("partition", "partition"),
               ("memory", "mem_gb"), ("time limit", "timeout_min"),
               ("feature", "additional_parameters.constraint"),
               ("node configuration", "cpus_per_task or .mem_gb"))


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's SlurmLauncher, checked against the cluster and watched."""

    def __call__(self, *args: Any) -> JobReturn:
        """One array task, in the SLURM job."""
        try:
            return super().__call__(*args)
        except Interrupted as err:
            # The run stopped at a step boundary with a checkpoint there; now submitit's own
            # handler of its signal requeues the job (or not, after max_num_timeout).
            if err.signum == signal.SIGUSR2 and callable(signal.getsignal(signal.SIGUSR2)):
                signal.raise_signal(signal.SIGUSR2)
            raise

    def setup(self, *, config: DictConfig, **kwargs: Any) -> None:
        # Before Hydra writes multirun.yaml: a request the cluster cannot hold writes nothing.
        super().setup(config=config, **kwargs)
        self.sweep_dir_existed = Path(str(config.hydra.sweep.dir)).exists()
        self.request = requested(self.params, OmegaConf.select(config, "device"))
        check_partition(self.request)

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        import submitit

        assert self.config is not None and self.hydra_context is not None
        params = dict(self.request)
        executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        HydraConfig.instance().set_config(self.config)  # the sweep's: continue_command reads it
        params["setup"] = [*(params.get("setup") or []),
                           f"export {CONTINUE_ENV}={shlex.quote(continue_command())}"]
        queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in queue_keys else f"slurm_{key}": value
                                      for key, value in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("SLURM job array of %d jobs, sweep folder %s", len(job_overrides), sweep_dir)
        jobs_args = [(list(overrides), "hydra.sweep.dir", initial_job_idx + idx,
                      f"job_id_for_{initial_job_idx + idx}", Singleton.get_state())
                     for idx, overrides in enumerate(job_overrides)]
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr
                jobs = executor.map_array(self, *zip(*jobs_args, strict=True))
        except submitit.core.utils.FailedJobError as err:
            if not self.sweep_dir_existed:  # a refused new sweep leaves no folder
                shutil.rmtree(sweep_dir, ignore_errors=True)
            raise sbatch_refusal(str(err)) from None
        try:
            wait_for(jobs)
        except KeyboardInterrupt:
            array_id = jobs[0].job_id.split("_")[0]
            print(f"interrupted by SIGINT: the SLURM job array {array_id} goes on (scancel "
                  f"{array_id} stops it); once it ends, grok sweep sweep.summarize_only=true "
                  f"hydra.sweep.dir={sweep_dir.resolve()} writes the table", file=sys.stderr)
            raise Interrupted(signal.SIGINT) from None
        except GrokError:
            started = any(job.paths.stdout.exists() for job in jobs)
            if not self.sweep_dir_existed and not started:  # a refused new sweep: no folder
                shutil.rmtree(sweep_dir, ignore_errors=True)
            raise
        return [self.outcome(job, list(overrides))
                for job, overrides in zip(jobs, job_overrides, strict=True)]

    def outcome(self, job: Any, overrides: list[str]) -> JobReturn:
        """The task's JobReturn; a task that ended without a result is recorded in its folder."""
        from grok_cli.runfolder.sweep import record_lost_job

        if job.paths.result_pickle.exists():
            try:
                return job.results()[0]
            except Exception as err:  # noqa: BLE001  submitit's error holds the job's trace
                error = f"SLURM job {job.job_id} failed: {str(err).strip().splitlines()[-1]}"
                status = "failed"
        else:
            # A task cancelled while pending leaves squeue at once (it was never split off
            # the array's record); nothing but a cancel removes a task that never started.
            state = queue_state(job.job_id)
            if state is None and not job.paths.stdout.exists():
                state = "CANCELLED"
            status = "cancelled" if state == "CANCELLED" else "failed"
            error = (f"SLURM job {job.job_id} ended {state} without a result" if state else
                     f"SLURM job {job.job_id} left the queue without a result")
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
        record_lost_job(job_dir, overrides, status, error)
        log.warning("%s: recorded in %s", error, job_dir)
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=status)


def requested(params: dict[str, Any], device: str | None) -> dict[str, Any]:
    """The launcher's parameters as sent; with device=cpu, no GPUs."""
    if device == "cpu" and params.get("gpus_per_node"):
        log.info("device=cpu: the jobs request no GPUs (%s.gpus_per_node ignored)", KEY)
        return {**params, "gpus_per_node": None}
    return dict(params)


def wait_for(jobs: list[Any]) -> None:
    """Wait until every task has a result or has left the queue; refuse a request SLURM says
    it can never run (the array is cancelled then). Result files are looked for every second,
    squeue is asked every SQUEUE_EVERY_S (a shared controller should not be asked more)."""
    waiting, asked, ended = list(jobs), -math.inf, {}
    while waiting:
        waiting = [job for job in waiting if not job.paths.result_pickle.exists()]
        states = None
        if waiting and time.monotonic() - asked >= SQUEUE_EVERY_S:
            states, asked = queue_states(jobs[0].job_id.split("_")[0]), time.monotonic()
        for job in list(waiting) if states is not None else []:
            state, reason = states.get(job.job_id, (None, ""))
            never = next((key for word, key in NEVER_REASONS.items()
                          if state == "PENDING" and reason.startswith(word)), None)
            if never:
                array_id = job.job_id.split("_")[0]
                subprocess.run(["scancel", array_id], check=False)
                raise GrokError(f"SLURM can never start these jobs (squeue: {reason}): change "
                                f"{KEY}.{never} (job array {array_id} was cancelled)")
            if state is None or state in FINISHED_STATES:
                ended.setdefault(job.job_id, time.monotonic())
                # its result file may still show up (not so for a task that never started)
                late = state == "COMPLETED" or (state is None and job.paths.stdout.exists())
                if not late or time.monotonic() - ended[job.job_id] >= RESULT_GRACE_S:
                    waiting.remove(job)
        if waiting:
            time.sleep(1)


def queue_states(array_id: str) -> dict[str, tuple[str, str]] | None:
    """{"<array>_<task>": (state, reason)} from squeue, ended tasks included while SLURM keeps
    them; None when squeue does not answer (a busy controller: ask again later)."""
    done = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", array_id, "-o",
                           "%i|%T|%r"], capture_output=True, text=True, check=False)
    if done.returncode != 0:  # purged after MinJobAge: every task has left the queue
        return {} if "invalid job id" in done.stderr.lower() else None
    rows = (line.split("|", 2) for line in done.stdout.splitlines() if line.count("|") == 2)
    return {job_id: (state, reason) for job_id, state, reason in rows}


def queue_state(job_id: str) -> str | None:
    return (queue_states(job_id.split("_")[0]) or {}).get(job_id, (None, None))[0]


def sbatch_refusal(message: str) -> GrokError:
    """sbatch's refusal of the array as one line naming the launcher key to change."""
    lines = [line.removeprefix("sbatch: error: ").strip() for line in message.splitlines()
             if line.strip()]
    reason = "; ".join(dict.fromkeys(lines)) or "no reason given"
    key = next((key for word, key in SBATCH_KEYS if word in reason.lower()), None)
    change = f"change {KEY}.{key}" if key else f"check the {KEY}.* keys"
    return GrokError(f"sbatch refused the job array: {reason}; {change}")


def check_partition(params: dict[str, Any]) -> None:
    """Refuse, before submitting, a request larger than every node of the partition (sinfo)."""
    partition = (params.get("partition")
                 or (params.get("additional_parameters") or {}).get("partition")
                 or os.environ.get("SBATCH_PARTITION"))  # sbatch reads it too
    if partition and "," in str(partition):
        return  # several partitions: sbatch picks one that fits
    command = ["sinfo", "-h", "-o", "%P|%c|%m|%l|%G"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return  # no sinfo here: sbatch decides
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 4]
    names = [row[0].rstrip("*") for row in rows]
    if partition and partition not in names:
        raise GrokError(f"{KEY}.partition={partition!r} is not allowed: one of "
                        f"{', '.join(dict.fromkeys(names))}{did_you_mean(partition, names)}")
    rows = [row for row in rows if (row[0].rstrip("*") == partition if partition
                                    else row[0].endswith("*"))]
    if not rows:
        return  # no default partition: sbatch decides
    name = rows[0][0].rstrip("*")
    cpus = max(int(row[1].rstrip("+")) for row in rows)
    mem_mb = max(int(row[2].rstrip("+")) for row in rows)
    limit = max(minutes(row[3]) for row in rows)
    tasks = params.get("tasks_per_node") or 1
    requested = (("cpus_per_task", (params.get("cpus_per_task") or 1) * tasks, cpus,
                  f"at most {cpus // tasks} (partition {name}'s nodes have {cpus} CPUs)"),
                 ("mem_gb", (params.get("mem_gb") or 0) * 1024, mem_mb,
                  f"at most {mem_mb // 1024} (partition {name}'s nodes have {mem_mb} MB)"),
                 ("timeout_min", params.get("timeout_min") or 0, limit,
                  f"at most {limit} (partition {name}'s time limit)"))
    for key, asked, offered, allowed in requested:
        if asked > offered:
            raise GrokError(f"{KEY}.{key}={params[key]} is not allowed: {allowed}")
    if params.get("gpus_per_node") and all(row[4] in ("(null)", "") for row in rows):
        raise GrokError(f"{KEY}.gpus_per_node={params['gpus_per_node']} is not allowed: "
                        f"partition {name} has no GPUs; use device=cpu (or "
                        f"{KEY}.gpus_per_node=0), or a partition with GPUs")


def minutes(limit: str) -> float:
    """sinfo's time limit ("infinite", "30:00", "1-00:00:00", "2:00:00") in minutes."""
    if limit in ("infinite", "n/a", "UNLIMITED"):
        return float("inf")
    days, _, clock = limit.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    hours, mins, secs = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + hours * 60 + mins + secs / 60
