"""What a job costs to start under launcher=slurm: one 1-step job, timed from the logs.

    python scripts/bench_slurm_start.py [--partition debug] [--repeats 3]

Needs a SLURM cluster (scripts/slurm_local_cluster.sh start). For each repeat it runs
`grok sweep launcher=slurm device=cpu ... steps=1` into a fresh folder and reads the times
off the logs: submission -> the job's process starts (SLURM's scheduling), the job's start ->
its first `grok` log line (Python, torch and grok imports, unpickling the job), and the whole
command's wall time; then the same job with launcher=basic, for comparison.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = ["device=cpu", "task=modadd", "task.p=23", "model.hidden_size=32", "model.num_heads=2",
       "steps=1", "eval_every=1", "seed=0"]
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"


def stamp(pattern: str, text: str) -> dt.datetime:
    found = re.search(STAMP + r"[^\n]*?" + pattern, text)
    if not found:
        raise SystemExit(f"no {pattern!r} in the logs")
    return dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")


def sweep(folder: Path, *args: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "grok_cli.cli", "sweep", *JOB, *args,
                           f"hydra.sweep.dir={folder}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return time.perf_counter() - began, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partition", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    slurm = ["launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
    if args.partition:
        slurm.append(f"hydra.launcher.partition={args.partition}")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            folder = Path(tmp) / f"slurm{i}"
            wall, log = sweep(folder, *slurm)
            job_log = next(folder.glob(".submitit/*/*_log.out")).read_text()
            run_log = next(folder.glob("*/run.log")).read_text()
            submitted = stamp(r"SLURM job array", log)
            started = stamp(r"Starting with JobEnvironment", job_log)
            first = stamp(r"\]\[INFO\]", run_log)
            print(f"slurm: queue {(started - submitted).total_seconds():.1f} s, job start to "
                  f"first grok line {(first - started).total_seconds():.1f} s, "
                  f"command {wall:.1f} s")
            basic, _ = sweep(Path(tmp) / f"basic{i}")
            print(f"basic: command {basic:.1f} s")


if __name__ == "__main__":
    main()
