"""How many threads a command computes with (`threads=auto|N`): one rule for `grok run` and
every analysis (`grok pathways`, `grok fourier`, `grok cds`), applied once, before the work.

The count is the number of cores this process may use, never the number the machine has: the
CPU affinity (taskset, SLURM's --cpus-per-task), the cgroup CPU quota (a container's --cpus),
and OMP_NUM_THREADS when the environment sets it. Torch's intra-op threads and every library's
worker pool (rapidfuzz's edit distances) take that one count.

Intra-op threads split one op. The ops of the models here are small (the default GPT's largest
weight matrix is 64 x 256; an OLMoE of 64 experts has many matrices, each of hidden x expert
size), and splitting a few microseconds of work costs more in synchronisation than it saves:
on a loaded 2-core machine two threads made the default run 12x slower than one (README,
Threads), and `grok pathways` 3x slower. So `auto` gives a model whose largest matrix is small
one thread on a CPU.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from grok_cli.errors import check, is_int

log = logging.getLogger("grok")

# A model whose largest weight matrix (one op's weights: one expert's, for a stack of experts)
# has fewer entries than this is "small": one thread on a CPU. The modular-task models (the
# default 64-wide GPT: 64 x 256; experiment=cds_modadd's 128-wide one: 128 x 512; nanda_p113:
# 128 x 512) and OLMoEs of 64-wide experts are below it; the text recipe's BERT (a 30,522 x 128
# embedding, the output layer's weights too: 3.9M) is above it.
SMALL_MATRIX = 1_000_000
CGROUP = Path("/sys/fs/cgroup")


def cgroup_cpus(root: Path = CGROUP) -> int | None:
    """The cgroup's CPU quota in whole cores (rounded up), None when there is none: cgroup v2's
    cpu.max ("max 100000" = none), else v1's cpu.cfs_quota_us (-1 = none) over cfs_period_us."""
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            v1 = next((root / d for d in ("cpu", "cpu,cpuacct") if (root / d).is_dir()), None)
            if v1 is None:
                return None
            quota = (v1 / "cpu.cfs_quota_us").read_text().strip()
            period = (v1 / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return max(math.ceil(int(quota) / int(period)), 1)


def cores() -> int:
    """The CPU cores this process may run on: its affinity (a SLURM or taskset limit), capped
    by the cgroup's CPU quota (a container limit)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    quota = cgroup_cpus()
    return min(allowed, quota) if quota else allowed


def check_threads(value: Any) -> None:
    """`threads=`: auto or a positive integer (one `error:` line otherwise)."""
    check(value == "auto" or (is_int(value) and value > 0), "threads", value,
          "auto or a positive integer (CPU threads: intra-op and worker pools)")


def largest_matrix(model: Any) -> int:
    """Entries of the model's largest weight matrix (the last two dims: a stack of experts is
    one matrix per expert)."""
    sizes = [p.shape[-2] * p.shape[-1] if p.dim() >= 2 else p.numel()
             for p in model.parameters()]
    return max(sizes, default=0)


def parallel_jobs(hydra_cfg: Any) -> int:
    """Jobs running side by side on this machine: hydra.launcher.n_jobs under launcher=local
    (joblib's meaning: -1 = one per core, -2 = all cores but one, ...), else 1."""
    launcher = getattr(hydra_cfg, "launcher", None) if hydra_cfg is not None else None
    n_jobs = launcher.get("n_jobs") if launcher is not None else None
    if not is_int(n_jobs) or "joblib" not in str(launcher.get("_target_", "")):
        return 1
    return max(cores() + 1 + n_jobs if n_jobs < 0 else n_jobs, 1)


def decide_threads(value: Any, device_type: str, matrix: int, hydra_cfg: Any = None,
                   environ: dict[str, str] | None = None) -> tuple[int, str]:
    """(count, why) for `threads=value` (checked by the command's validation): an explicit
    positive integer wins; `auto` takes OMP_NUM_THREADS when the environment sets it, else 1
    for a model of small matrices on a CPU, else the cores shared among the parallel jobs."""
    if value != "auto":
        return value, f"threads={value}"
    omp = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp), f"threads=auto: OMP_NUM_THREADS={omp}"
    if device_type == "cpu" and matrix < SMALL_MATRIX:
        return 1, "threads=auto: small matrices on a CPU"
    jobs = parallel_jobs(hydra_cfg)
    shared = f" shared by {jobs} jobs" if jobs > 1 else ""
    return max(cores() // jobs, 1), f"threads=auto: {cores()} cores this process may use{shared}"


def resolve_threads(value: Any, device: Any, matrix: int, hydra_cfg: Any = None,
                    environ: dict[str, str] | None = None) -> int:
    """The thread count of decide_threads; device: a torch.device or its type."""
    return decide_threads(value, getattr(device, "type", str(device)), matrix, hydra_cfg,
                          environ)[0]


def apply_threads(value: Any, model: Any, device: Any, hydra_cfg: Any = None) -> int:
    """Set torch's intra-op threads for this command (`threads=value`), log the count and why,
    and return it (what the command gives its libraries' worker pools). model None: a command
    without one (`grok cds`), which does not load torch for this."""
    if hydra_cfg is None:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    matrix = largest_matrix(model) if model is not None else SMALL_MATRIX
    threads, why = decide_threads(value, getattr(device, "type", str(device)), matrix,
                                  hydra_cfg)
    if model is not None:
        import torch

        torch.set_num_threads(threads)
    log.info("threads: %d (%s)", threads, why)
    return threads


def check_flush_threads(flush: bool, threads: int) -> None:
    """flush_denormal=true needs one CPU thread (config.py checks an explicit `threads=N`
    before anything runs; a run checks what `threads=auto` gave it)."""
    check(not flush or threads == 1, "flush_denormal", True,
          f"true with one CPU thread (threads=1; this run would have {threads}): the mode is "
          "per thread, and torch's worker threads keep theirs")
