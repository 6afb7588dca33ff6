"""Batched sweeps: K runs that share an architecture, trained in one process as one model.

The members of a sweep over seeds and data sizes differ only in their initial weights and
their training subsets. Their parameters are stacked along a new leading axis
(`torch.func.stack_module_state`) and one `vmap`-ed `functional_call` runs all K forwards as
batched matmuls. Each member's loss is the mean over its own rows, so the gradient of the
summed loss with respect to member k's slice is member k's gradient. Adam(W) updates each
element alone, so one optimizer over the stacked tensors is K optimizers.

Members with different train sizes are padded to the largest (padding never enters a
loss). Same numbers as the unbatched runs to float rounding only: the batched kernels round
differently, and training is chaotic enough that such differences grow to ~1e-2 in the losses
within ~200 steps in fp32, as do those between two unbatched runs on 1 vs 2 threads; in
float64 they agree within 1e-5 over 200 steps (tests/test_batched.py; ~2e-7 measured).

Each member writes an ordinary run folder (metrics.csv, summary.json, curves.png,
checkpoints/last.pt in the unbatched format, .hydra/config.yaml): `grok cds`, and a later
`grok run` resuming it, cannot tell the difference.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from grok_cli.config import validate_run_config
from grok_cli.errors import GrokError, check
from grok_cli.models import build_model, l2_norm_of, rescale
from grok_cli.tasks import TaskData, build_task
from grok_cli.training.checkpoint import checkpoint_state, save_checkpoint
from grok_cli.training.optim import build_optimizer
from grok_cli.training.records import MetricsLog
from grok_cli.training.run import finish_run, run_experiment
from grok_cli.training.trainer import resolve_device

log = logging.getLogger("grok")

# What the members of one batch may differ in; everything else must be equal.
MEMBER_KEYS = ("seed", "data_fraction", "train_size")
COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "l2_norm")


@dataclass
class Member:
    cfg: DictConfig
    run_dir: Path
    task: TaskData
    model: nn.Module  # this member's own module: used for its checkpoints
    rng: torch.Tensor  # the global RNG state after its init, as the unbatched trainer saves
    status: str = "completed"
    error: str | None = None


def shared_config(cfg: DictConfig) -> dict[str, Any]:
    """The config without the keys members may differ in (nor Hydra's own)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in plain.items() if k not in MEMBER_KEYS and k != "hydra"}


def check_batchable(cfgs: list[DictConfig]) -> None:
    """Members must share everything but seed and data size; full batch; no dropout."""
    check(len(cfgs) > 0, "launcher", "batched", "a sweep with at least one member")
    first = shared_config(cfgs[0])
    for cfg in cfgs[1:]:
        other = shared_config(cfg)
        differing = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        check(not differing, "launcher", "batched",
              f"members that differ only in {', '.join(MEMBER_KEYS)} (these differ too: "
              f"{', '.join(differing)}); use launcher=basic")
    cfg = cfgs[0]
    check(cfg.batch_size is None, "launcher", "batched",
          f"full-batch runs (batch_size=null, got {cfg.batch_size}); use launcher=basic")
    check(cfg.model.get("dropout", 0) == 0, "launcher", "batched",
          "models without dropout (model.dropout=0); use launcher=basic")


def train_batched(member_cfgs: list[DictConfig], run_dirs: list[Path]) -> list[str]:
    """Train the members together; one run folder each; returns their summary statuses.

    A member that fails to build (e.g. a bad train_size) is recorded as failed, as in a
    multirun, and the others go on. Members whose folder already holds a checkpoint (finished
    or interrupted) go through the ordinary `run_experiment`, which skips or resumes them.
    Raises GrokError when the members cannot share one model (see `check_batchable`).
    """
    check_batchable(member_cfgs)
    statuses: dict[int, str] = {}
    members: dict[int, Member] = {}
    for i, (cfg, run_dir) in enumerate(zip(member_cfgs, run_dirs, strict=True)):
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(cfg, run_dir)
        if cfg.resume and (run_dir / "checkpoints" / "last.pt").exists():
            statuses[i] = run_experiment(cfg, run_dir, isolate_failures=True)
            continue
        try:
            validate_run_config(cfg)
            members[i] = build_member(cfg, run_dir)
        except GrokError as err:
            log.error("error: %s: %s", run_dir, err)
            finish_run(run_dir, cfg, status="failed", error=str(err))
            statuses[i] = "failed"
    if members:
        _train_members(list(members.values()))
    statuses.update({i: member.status for i, member in members.items()})
    return [statuses[i] for i in range(len(member_cfgs))]


def _train_members(members: list[Member]) -> None:
    try:
        _loop(members)
    except (GrokError, Exception) as err:
        message = str(err) if isinstance(err, GrokError) else f"{type(err).__name__}: {err}"
        log.error("error: batched training failed: %s", message,
                  exc_info=not isinstance(err, GrokError))
        for member in members:
            member.status, member.error = "failed", message
    except BaseException:  # Ctrl-C or a scheduler's signal: record it, then stop
        for member in members:
            _finish(member, "failed", "interrupted")
        raise
    for member in members:
        _finish(member, member.status, member.error)


def build_member(cfg: DictConfig, run_dir: Path) -> Member:
    """Init exactly as the unbatched trainer does: same seed, same order of RNG use."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    task = build_task(cfg, device)
    model = build_model(cfg.model, task)
    rescale(model, cfg.alpha)
    model.to(device).train()
    return Member(cfg, run_dir, task, model, torch.get_rng_state())


def _stack(members: list[Member], attr: str, pad_value: int = 0) -> torch.Tensor:
    """Members' train tensors padded to the largest train size: [K, N_max, ...]."""
    tensors = [getattr(m.task.train, attr) for m in members]
    n_max = max(len(t) for t in tensors)
    out = tensors[0].new_full((len(tensors), n_max, *tensors[0].shape[1:]), pad_value)
    for k, t in enumerate(tensors):
        out[k, : len(t)] = t
    return out


def _loop(members: list[Member]) -> None:
    cfg = members[0].cfg
    # The stacked forward takes token ids only: padded inputs (text tasks) would be attended.
    check(all(m.task.train.mask is None for m in members), "launcher", "batched",
          "tasks without padding (the modular tasks); use launcher=basic")
    stacked, buffers = stack_module_state([m.model for m in members])
    params = {name: nn.Parameter(t) for name, t in stacked.items()}
    base = copy.deepcopy(members[0].model)  # a template: functional_call swaps in the weights

    def logits_of(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    per_member = vmap(logits_of)  # each member its own inputs
    shared_input = vmap(logits_of, in_dims=(0, 0, None))  # one test set for all
    x, y = _stack(members, "x"), _stack(members, "y")
    sizes = [len(m.task.train) for m in members]
    test = members[0].task.test
    holder = nn.ParameterList(params.values())  # the optimizer sees the stacked tensors
    optimizer, schedule = build_optimizer(cfg.optimizer, cfg.weight_decay, holder)
    logs = [MetricsLog(m.run_dir / "metrics.csv") for m in members]
    for metrics in logs:
        metrics.start(keep_before_step=None)
    live = torch.ones(len(members), dtype=torch.bool)
    began = time.perf_counter()
    for step in range(cfg.steps + 1):
        logits = per_member(params, buffers, x).float()  # [K, N_max, C]
        # Each member's own mean over its real rows, the very op its unbatched run uses.
        loss = torch.stack([F.cross_entropy(logits[k, :n], y[k, :n])
                            for k, n in enumerate(sizes)])
        if step % cfg.eval_every == 0 or step == cfg.steps:
            tests = _evaluate(shared_input, params, buffers, test, cfg.eval_batch_size)
            rows = [torch.stack([loss[k].detach(),
                                 (logits[k, :n].argmax(-1) == y[k, :n]).float().mean(),
                                 *tests[k], l2_norm_of([p[k] for p in params.values()])])
                    for k, n in enumerate(sizes)]
            table = torch.stack(rows).tolist()  # the one host sync
            elapsed = time.perf_counter() - began
            for k, values in enumerate(table):
                if live[k]:
                    _record(members[k], logs[k], step, values, schedule, elapsed)
                    live[k] = members[k].status == "completed"
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                _save(members, params, optimizer, schedule, step, elapsed, live)
            if not live.any():
                break
        if step == cfg.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        schedule.step()


@torch.no_grad()
def _evaluate(fn: Any, params: dict, buffers: dict, split: Any, batch_size: int
              ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each member's mean loss and accuracy over a split all members share.

    One batched forward per chunk; the reductions per member, as `trainer.evaluate` does them.
    """
    sums = [(torch.zeros((), device=split.y.device), torch.zeros((), device=split.y.device))
            for _ in range(next(iter(params.values())).shape[0])]
    for start in range(0, len(split), batch_size):
        part = split.subset(slice(start, start + batch_size))
        logits = fn(params, buffers, part.x).float()  # [K, B, C]
        for (loss_sum, correct), member_logits in zip(sums, logits, strict=True):
            loss_sum += F.cross_entropy(member_logits, part.y, reduction="sum")
            correct += (member_logits.argmax(-1) == part.y).sum()
    return [(loss_sum / len(split), correct / len(split)) for loss_sum, correct in sums]


def _record(member: Member, metrics: MetricsLog, step: int, values: list[float],
            schedule: Any, elapsed: float) -> None:
    row = dict(zip(COLUMNS, values, strict=True))
    row.update(step=step, lr=schedule.get_last_lr()[0], elapsed_s=elapsed)
    metrics.append(row)
    if not all(v == v and abs(v) != float("inf") for v in values):
        member.status = "diverged"
        member.error = (f"non-finite loss by step {step}; the last good checkpoint is kept at "
                        f"{member.run_dir / 'checkpoints' / 'last.pt'}")


@torch.no_grad()
def _save(members: list[Member], params: dict[str, torch.Tensor], optimizer: Any,
          schedule: Any, step: int, elapsed: float, live: torch.Tensor) -> None:
    """Each live member's checkpoints/last.pt, exactly as its unbatched run would write it."""
    opt_state = optimizer.state_dict()
    for k, member in enumerate(members):
        if not live[k]:
            continue
        own = dict(member.model.named_parameters())
        for name, stacked in params.items():
            own[name].copy_(stacked[k])
        state = {i: {key: value if key == "step" else value[k] for key, value in s.items()}
                 for i, s in opt_state["state"].items()}
        sampler = torch.Generator(member.task.train.y.device).manual_seed(member.cfg.seed)
        save_checkpoint(member.run_dir / "checkpoints" / "last.pt", checkpoint_state(
            member.cfg, member.task, step, elapsed, model=member.model.state_dict(),
            optimizer={"state": state, "param_groups": opt_state["param_groups"]},
            schedule=schedule.state_dict(),
            rng={"torch": member.rng, "sampler": sampler.get_state()}))


def _write_config(cfg: DictConfig, run_dir: Path) -> None:
    """The run's config where `grok cds` reads it (Hydra's own file, when Hydra wrote none)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, path, resolve=True)


def _finish(member: Member, status: str, error: str | None) -> None:
    finish_run(member.run_dir, member.cfg, status=status, error=error,
               n_train=len(member.task.train), n_test=len(member.task.test),
               label_names=member.task.label_names,
               device=str(member.task.train.y.device), batched=True)


class BatchedLauncher(Launcher):
    """A Hydra launcher that trains all jobs of a multirun as one batched model.

    Each job gets its folder and .hydra/ files from Hydra's own `run_job` (so sweep tools that
    read them work unchanged), with a task function that only collects (config, folder);
    then `train_batched` trains them all. Select it with `grok sweep launcher=batched`
    (Hydra loads launchers only from `hydra_plugins`: see hydra_plugins/grok_batched).
    """

    def __init__(self, **_: Any) -> None:
        super().__init__()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        collected: list[tuple[DictConfig, Path]] = []

        def collect(cfg: DictConfig) -> None:
            collected.append((cfg, Path(HydraConfig.get().runtime.output_dir)))

        returns = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                         list(overrides))
            with open_dict(job_cfg):
                job_cfg.hydra.job.id = job_cfg.hydra.job.num = idx
            returns.append(run_job(hydra_context=self.hydra_context, task_function=collect,
                                   config=job_cfg, job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
        log.info("training %d jobs batched", len(collected))
        try:
            statuses = train_batched([c for c, _ in collected], [d for _, d in collected])
        except GrokError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        for ret, status in zip(returns, statuses, strict=True):
            ret.return_value = status
        return returns
