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

The loop is trainer.py's, step for step, with its pieces (evaluation, metrics rows, run log,
checkpoint state, finishing): each member writes an ordinary run folder (metrics.csv,
summary.json, curves.png, checkpoints/last.pt in the unbatched format, .hydra/), so `grok cds`,
and a later `grok run` resuming it, cannot tell the difference.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from grok_cli.config import validate_run_config
from grok_cli.errors import GrokError, check
from grok_cli.models import l2_norm_of, rescale
from grok_cli.tasks import TASKS, TaskData
from grok_cli.tasks.text import build_text
from grok_cli.threads import apply_threads
from grok_cli.training.checkpoint import (
    checkpoint_state,
    save_checkpoint,
    save_snapshot,
    snapshot_files,
)
from grok_cli.training.device import accelerate, check_device, resolve_device, rng_state
from grok_cli.training.folder import RunFolder
from grok_cli.training.levers import unbatched_levers
from grok_cli.training.optim import build_optimizer
from grok_cli.training.run import finish, record_failure, run_experiment, stop_interrupted
from grok_cli.training.sampling import build_sampler
from grok_cli.training.signals import StopSignals, signal_name
from grok_cli.training.trainer import (
    Outcome,
    RunLog,
    accept,
    build_task_and_model,
    correct_counts,
    diverged_error,
    evaluate,
    finite,
    is_ckpt_step,
    is_eval_step,
    metrics_rows,
)

log = logging.getLogger("grok")

# What the members of one batch may differ in; everything else must be equal.
MEMBER_KEYS = ("seed", "data_fraction", "train_size")


@dataclass
class Member:
    cfg: DictConfig
    run_dir: Path
    task: TaskData
    model: nn.Module  # this member's own module: used for its checkpoints and snapshots
    rng: dict[str, Any]  # the random state after its init, as the unbatched trainer saves it
    runlog: RunLog
    outcome: Outcome

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"


def shared_config(cfg: DictConfig) -> dict[str, Any]:
    """The config without the keys members may differ in (nor Hydra's own)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in plain.items() if k not in MEMBER_KEYS and k != "hydra"}


def check_batchable(cfgs: list[DictConfig]) -> None:
    """Refuse, before any job folder exists, members that cannot share one vmapped model or
    options the batched loop does not honour (it honours precision, save_every and
    logger=csv|tensorboard)."""
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
    # The stacked forward takes token ids only: padded inputs (text tasks) would be attended.
    check(TASKS.get(cfg.task.name) is not build_text, "launcher", "batched",
          "tasks without padding (the modular tasks); use launcher=basic")
    check(not cfg.compile, "compile", cfg.compile,
          "false with launcher=batched (torch.compile does not take the vmapped members); "
          "use launcher=basic")
    check(cfg.logger.name != "wandb", "logger", cfg.logger.name,
          "csv or tensorboard with launcher=batched (W&B keeps one run per process); "
          "use launcher=basic")
    for lever in unbatched_levers(cfg):
        check(False, lever, OmegaConf.select(cfg, lever), "its default with launcher=batched "
              "(the batched loop has plain cross-entropy, no gradient filter, no ⊥Grad, no "
              "early stop and no router load-balancing loss); use launcher=basic")


def train_batched(member_cfgs: list[DictConfig], run_dirs: list[Path]) -> list[str]:
    """Train the members together; one run folder each; returns their summary statuses.

    A member that fails to build (e.g. a bad train_size) is recorded as failed, as in a
    multirun, and the others go on. Members whose folder already holds a checkpoint (finished
    or interrupted) go through the ordinary `run_experiment`, which skips or resumes them.
    Raises GrokError, creating no folder, when the members cannot share one model (see
    `check_batchable`), and `Interrupted` after a SIGINT / SIGTERM.
    """
    check_batchable(member_cfgs)
    statuses: dict[int, str] = {}
    members: dict[int, Member] = {}
    stop = StopSignals()
    with stop.installed(), contextlib.ExitStack() as held:
        for i, (cfg, run_dir) in enumerate(zip(member_cfgs, map(Path, run_dirs), strict=True)):
            if cfg.resume and (run_dir / "checkpoints" / "last.pt").exists():
                statuses[i] = run_experiment(cfg, run_dir, isolate_failures=True)
                continue
            try:
                folder = held.enter_context(RunFolder(run_dir).claimed())
            except GrokError as err:  # another process holds it: not ours to write
                log.error("error: %s", err)
                statuses[i] = "failed"
                continue
            try:
                members[i] = build_member(cfg, run_dir)
            except GrokError as err:
                log.error("error: %s: %s", run_dir, err)
                record_failure(cfg, folder, err, keep_new_folder=True)
                statuses[i] = "failed"
        if members:
            _train_members(list(members.values()), stop)
    statuses.update({i: member.outcome.status for i, member in members.items()})
    return [statuses[i] for i in range(len(member_cfgs))]


def build_member(cfg: DictConfig, run_dir: Path) -> Member:
    """Init exactly as the unbatched trainer does: same seed, same order of RNG use."""
    validate_run_config(cfg)
    check_device(cfg.device)
    device = resolve_device(cfg.device)
    task, model = build_task_and_model(cfg, device)
    apply_threads(cfg.get("threads", "auto"), model, device)
    rescale(model, cfg.alpha)
    model.to(device).train()
    rng = rng_state(build_sampler(cfg, len(task.train), device))
    runlog = RunLog(cfg, run_dir, task.group_names)
    accept(cfg, run_dir, runlog, start=0)
    return Member(cfg, run_dir, task, model, rng, runlog, Outcome("completed", task, str(device)))


def _train_members(members: list[Member], stop: StopSignals) -> None:
    try:
        with stop.deferring():
            _loop(members, stop)
    except Exception as err:
        message = str(err) if isinstance(err, GrokError) else f"{type(err).__name__}: {err}"
        log.error("error: batched training failed: %s", message,
                  exc_info=not isinstance(err, GrokError))
        for member in members:
            member.outcome.status, member.outcome.error = "failed", message
    finally:
        for member in members:
            member.runlog.close()
    with stop.deferring():
        for member in members:
            if member.cfg.save_every:
                member.outcome.extra["snapshots"] = snapshot_files(member.run_dir)
            finish(member.outcome, member.cfg, member.run_dir, batched=True)
    interrupted = [m.outcome for m in members if m.outcome.status == "interrupted"]
    if interrupted:
        stop_interrupted(interrupted[0])


def _stack(members: list[Member], attr: str, pad_value: int = 0) -> torch.Tensor:
    """Members' train tensors padded to the largest train size: [K, N_max, ...]."""
    tensors = [getattr(m.task.train, attr) for m in members]
    n_max = max(len(t) for t in tensors)
    out = tensors[0].new_full((len(tensors), n_max, *tensors[0].shape[1:]), pad_value)
    for k, t in enumerate(tensors):
        out[k, : len(t)] = t
    return out


def _loop(members: list[Member], stop: StopSignals) -> None:
    """trainer._loop for K members: the same steps, evaluations and checkpoints."""
    cfg = members[0].cfg
    stacked, buffers = stack_module_state([m.model for m in members])
    params = {name: nn.Parameter(t) for name, t in stacked.items()}
    base = copy.deepcopy(members[0].model)  # a template: functional_call swaps in the weights
    accelerate(base, cfg, resolve_device(cfg.device))  # precision=bf16: autocast on CUDA

    def logits_of(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    per_member = vmap(logits_of)  # each member its own inputs
    shared_input = vmap(logits_of, in_dims=(0, 0, None))  # one test set for all
    x, y = _stack(members, "x"), _stack(members, "y")
    sizes = [len(m.task.train) for m in members]
    test, groups = members[0].task.test, members[0].task.group_names
    n_groups = members[0].task.n_groups
    group = None if test.group is None else _stack(members, "group")
    train_sizes = [m.task.train.group_sizes(n_groups) for m in members]
    test_sizes = test.group_sizes(n_groups)
    holder = nn.ParameterList(params.values())  # the optimizer sees the stacked tensors
    optimizer, schedule = build_optimizer(cfg.optimizer, cfg.weight_decay, holder)
    nonfinite = torch.zeros(len(members), dtype=torch.bool, device=x.device)
    began = time.perf_counter()
    for step in range(cfg.steps + 1):
        if stop.signum is not None:  # a step boundary, as in trainer._loop
            _save(members, params, optimizer, schedule, step, time.perf_counter() - began,
                  keep=(~nonfinite).tolist())
            for member in _live(members):
                member.outcome.status, member.outcome.signum = "interrupted", stop.signum
                member.outcome.error = f"interrupted by {signal_name(stop.signum)} at step {step}"
            break
        logits = per_member(params, buffers, x).float()  # [K, N_max, C]
        # Each member's own mean over its real rows, the very op its unbatched run uses.
        loss = torch.stack([F.cross_entropy(logits[k, :n], y[k, :n])
                            for k, n in enumerate(sizes)])
        nonfinite |= ~torch.isfinite(loss.detach())
        if is_eval_step(cfg, step):
            correct = torch.stack([
                correct_counts(logits[k, :n], y[k, :n], None if group is None else group[k, :n],
                               n_groups) for k, n in enumerate(sizes)])
            test_stats = evaluate(lambda x, mask: shared_input(params, buffers, x), test,
                                  cfg.eval_batch_size, n_groups=n_groups)
            l2 = torch.stack([l2_norm_of([p[k] for p in params.values()])
                              for k in range(len(members))])
            rows = metrics_rows(step, (loss.detach(), correct), test_stats, l2, train_sizes,
                                test_sizes, groups, lr=schedule.get_last_lr()[0],
                                elapsed_s=time.perf_counter() - began)
            bad = nonfinite.tolist()
            for member, row, diverged in zip(members, rows, bad, strict=True):
                if member.outcome.status == "completed":
                    member.runlog.write(row)
                    if diverged or not finite(row):
                        member.outcome.status = "diverged"
                        member.outcome.error = diverged_error(step, member.ckpt_path)
            if is_ckpt_step(cfg, step):
                _save(members, params, optimizer, schedule, step, rows[0]["elapsed_s"],
                      keep=[True] * len(members))
            if cfg.save_every and step % cfg.save_every == 0:
                for k, member in enumerate(members):
                    if member.outcome.status == "completed":
                        save_snapshot(_unstack(member, params, k), member.run_dir, step,
                                      member.cfg)
            if not _live(members):
                break
        if step == cfg.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        schedule.step()


def _live(members: list[Member]) -> list[Member]:
    return [m for m in members if m.outcome.status == "completed"]


@torch.no_grad()
def _unstack(member: Member, params: dict[str, torch.Tensor], k: int) -> nn.Module:
    """Member k's own module, holding its slice of the stacked weights."""
    own = dict(member.model.named_parameters())
    for name, stacked in params.items():
        own[name].copy_(stacked[k])
    return member.model


def _save(members: list[Member], params: dict[str, torch.Tensor], optimizer: Any,
          schedule: Any, step: int, elapsed: float, keep: list[bool]) -> None:
    """Each live member's checkpoints/last.pt, exactly as its unbatched run would write it."""
    opt_state = optimizer.state_dict()
    for k, member in enumerate(members):
        if member.outcome.status != "completed" or not keep[k]:
            continue
        state = {i: {key: value if key == "step" else value[k] for key, value in s.items()}
                 for i, s in opt_state["state"].items()}
        save_checkpoint(member.ckpt_path, checkpoint_state(
            member.cfg, member.task, step, elapsed, member.runlog.metrics.record_before(step),
            model=_unstack(member, params, k).state_dict(),
            optimizer={"state": state, "param_groups": opt_state["param_groups"]},
            schedule=schedule.state_dict(), rng=member.rng))
