"""`launcher=batched`: a Hydra launcher that trains all jobs of a multirun as one model.

Select it with `grok sweep launcher=batched` (the one switch); the training itself is the
single-run loop's (grok_cli/training/trainer.py) over K members (training/members.py).
Hydra loads launchers only from the `hydra_plugins` namespace (hydra_plugins/grok_batched).
This module imports no torch: Hydra imports every plugin at start-up, also for `--help`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from grok_cli.errors import EXIT_USER_ERROR, GrokError
from grok_cli.runfolder.record import without_hydra

log = logging.getLogger("grok")


class BatchedLauncher(Launcher):
    """Checks that the jobs can be batched before any job folder exists, then gives each job
    its folder through Hydra's own `run_job` with a task function that only collects
    (config, folder), and trains them all with `train_batched`."""

    def __init__(self, **_: Any) -> None:
        super().__init__()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        from grok_cli.training.batched import check_batchable, train_batched

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        job_cfgs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                         list(overrides))
            with open_dict(job_cfg):
                job_cfg.hydra.job.id = job_cfg.hydra.job.num = idx
            job_cfgs.append(job_cfg)
        try:
            check_batchable([without_hydra(job_cfg) for job_cfg in job_cfgs])
        except GrokError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        collected: list[tuple[DictConfig, Path]] = []

        def collect(cfg: DictConfig) -> None:
            collected.append((cfg, Path(HydraConfig.get().runtime.output_dir)))

        returns = [run_job(hydra_context=self.hydra_context, task_function=collect,
                           config=job_cfg, job_dir_key="hydra.sweep.dir",
                           job_subdir_key="hydra.sweep.subdir") for job_cfg in job_cfgs]
        log.info("training %d jobs batched", len(collected))
        statuses = train_batched([c for c, _ in collected], [d for _, d in collected])
        for ret, status in zip(returns, statuses, strict=True):
            ret.return_value = status
        return returns

