"""The training loop: one readable function, data on the device, host syncs only at evaluation.

Its pieces also serve the batched trainer (batched.py: K runs as one vmapped model): the
evaluation with exact accuracies (`evaluate`, `split_sums`), the metrics rows
(`metrics_rows`, `RunLog`), the evaluation and checkpoint schedule, and the outcome that
`run.finish_run` turns into summary.json.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from grok_cli.errors import check
from grok_cli.models import build_model, l2_norm, rescale
from grok_cli.tasks import Split, TaskData, build_task
from grok_cli.threads import apply_threads
from grok_cli.training.checkpoint import (
    checkpoint_state,
    load_checkpoint,
    save_checkpoint,
    save_snapshot,
    snapshot_files,
    snapshots,
)
from grok_cli.training.device import accelerate, resolve_device, rng_state, set_rng_state
from grok_cli.training.folder import RunFolder
from grok_cli.training.grokfast import GradFilter, build_grad_filter
from grok_cli.training.loggers import build_loggers
from grok_cli.training.losses import Loss, build_loss, cross_entropy
from grok_cli.training.optim import build_optimizer
from grok_cli.training.records import MetricsLog, metric_columns, read_metrics
from grok_cli.training.sampling import EpochMetrics, Sampler, build_sampler, build_train_metrics
from grok_cli.training.signals import StopSignals, signal_name
from grok_cli.training.stop import EarlyStop

log = logging.getLogger("grok")
progress_log = logging.getLogger("grok.progress")


@dataclass
class Outcome:
    status: str  # completed | diverged | interrupted
    task: TaskData
    device: str
    error: str | None = None
    signum: int | None = None  # the signal that interrupted it
    extra: dict[str, Any] = field(default_factory=dict)  # more summary.json fields


# ---------------------------------------------------------------- pieces both loops use


def correct_counts(logits: torch.Tensor, y: torch.Tensor, group: torch.Tensor | None = None,
                   n_groups: int = 1) -> torch.Tensor:
    """Correct predictions per data group, an integer tensor [..., n_groups] (a task without
    groups: one, the total), for logits [B, C] or K members' [K, B, C]. A scatter-add by group
    id on the device: no host sync."""
    right = logits.argmax(-1) == y
    if group is None:
        return right.sum(-1, keepdim=True)
    counts = torch.zeros((*right.shape[:-1], n_groups), dtype=torch.long, device=right.device)
    return counts.index_add_(-1, group, right.long())


def split_sums(logits: torch.Tensor, y: torch.Tensor, loss_fn: Loss = cross_entropy,
               group: torch.Tensor | None = None, n_groups: int = 1
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and the correct predictions per group (`correct_counts`), for one model's
    logits [B, C] or K members' [K, B, C] (each member's sum by the very op a single run
    uses, so the two agree bit for bit)."""
    if logits.dim() == 2:
        loss = loss_fn(logits, y, reduction="sum")
    else:
        loss = torch.stack([loss_fn(member, y, reduction="sum") for member in logits])
    return loss, correct_counts(logits, y, group, n_groups)


@torch.no_grad()
def evaluate(forward: Callable[..., torch.Tensor], split: Split, batch_size: int,
             loss_fn: Loss = cross_entropy, n_groups: int = 1
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and correct predictions per group over a whole split, in large no-grad
    batches; tensors, so no host sync."""
    loss_sum: Any = 0
    correct: Any = 0
    for start in range(0, len(split), batch_size):
        part = split.subset(slice(start, start + batch_size))
        loss, right = split_sums(forward(part.x, part.mask), part.y, loss_fn, part.group,
                                 n_groups)
        loss_sum, correct = loss_sum + loss, correct + right
    return loss_sum / len(split), correct


def metrics_rows(step: int, train: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], l2: torch.Tensor,
                 n_train: Sequence[Sequence[int]], n_test: Sequence[int],
                 groups: Sequence[str] | None = None, **fields: float) -> list[dict[str, Any]]:
    """The metrics.csv rows of one evaluation: (mean loss, correct counts per group) per split
    and the L2 norm, for one run (counts [G]) or K members (leading dimension K). `n_train`:
    each member's train samples per group; `n_test`: test samples per group; `groups`: the
    names of a task's data groups (columns train_acc/<group>, test_acc/<group>).

    Accuracies are integer counts divided in float64: 700 of 1,000 is written as 0.7, which a
    0.7 threshold reaches (float32 division gives 0.69999999, one evaluation late).
    """
    g = len(n_test)
    # The host syncs of an evaluation.
    losses = torch.stack([train[0], test[0], l2], -1).reshape(-1, 3).tolist()
    counts = torch.cat([train[1], test[1]], -1).reshape(-1, 2 * g).tolist()
    rows = []
    for (train_loss, test_loss, norm), right, sizes in zip(losses, counts, n_train, strict=True):
        row = {"step": step, "train_loss": train_loss, "train_acc": sum(right[:g]) / sum(sizes),
               "test_loss": test_loss, "test_acc": sum(right[g:]) / sum(n_test), "l2_norm": norm,
               **fields}
        for k, name in enumerate(groups or ()):
            row[f"train_acc/{name}"] = _accuracy(right[k], sizes[k])
            row[f"test_acc/{name}"] = _accuracy(right[g + k], n_test[k])
        rows.append(row)
    return rows


def _accuracy(right: int, n: int) -> float:
    return right / n if n else math.nan  # a group with no samples in a split has none


def finite(row: dict[str, Any]) -> bool:
    return all(math.isfinite(row[key]) for key in ("train_loss", "test_loss", "l2_norm"))


def diverged_error(step: int, ckpt_path: Path) -> str:
    return f"non-finite loss by step {step}; the last good checkpoint is kept at {ckpt_path}"


def is_eval_step(cfg: DictConfig, step: int) -> bool:
    return step % cfg.eval_every == 0 or step == cfg.steps


def is_ckpt_step(cfg: DictConfig, step: int) -> bool:
    """Checkpoints are taken at evaluations (a multiple of eval_every) and the last step."""
    return step % cfg.ckpt_every == 0 or step == cfg.steps


class RunLog:
    """Where a run's evaluation rows go: metrics.csv and the `logger=` trackers."""

    def __init__(self, cfg: DictConfig, run_dir: Path, groups: Sequence[str] | None = None
                 ) -> None:
        self.metrics = MetricsLog(run_dir / "metrics.csv", metric_columns(groups))
        self.trackers = build_loggers(cfg, run_dir)

    def write(self, row: dict[str, Any]) -> None:
        self.metrics.append(row)
        for tracker in self.trackers:
            tracker.log(row)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def accept(cfg: DictConfig, run_dir: Path, runlog: RunLog, start: int,
           metrics_record: dict[str, Any] | None = None) -> None:
    """The run is accepted: from here on the folder records it (.hydra/, metrics.csv from
    `start` on; an earlier summary no longer describes the folder, nor a checkpoint or snapshot
    of a step this run has not reached: a run's snapshots are only ever its own).

    Checked first, so that a refusal changes nothing: the folder's record must be this
    config's (unless resume=false), and on a resume metrics.csv must hold the rows the
    checkpoint recorded (`metrics_record`)."""
    folder = RunFolder(run_dir)
    if cfg.resume:
        folder.check_record(cfg)
    rows = runlog.metrics.kept_rows(start, metrics_record)
    folder.write_record(cfg)
    runlog.metrics.start(rows)
    (run_dir / "summary.json").unlink(missing_ok=True)
    stale = [path for step, path in snapshots(run_dir).items() if step >= start]
    if start == 0:
        stale.append(run_dir / "checkpoints" / "last.pt")
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- the single-run loop


@dataclass
class Session:
    """Everything one training run holds: built once, resumed from a checkpoint if any."""

    cfg: DictConfig
    run_dir: Path
    task: TaskData
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    sampler: Sampler  # minibatch indices (sampling=replacement|epoch)
    loss_fn: Loss
    early_stop: EarlyStop
    grad_filter: GradFilter | None = None  # grokfast=ema|ma
    epoch_metrics: EpochMetrics | None = None  # train_metrics=epoch
    start: int = 0
    elapsed_before: float = 0.0
    metrics_record: dict[str, Any] | None = None  # of the rows before `start` (checkpoint's)

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def save(self, step: int, elapsed_s: float, replay: dict[str, Any], runlog: RunLog) -> None:
        """`replay`: what `replay_state` took before the step's draws (`rng`, and with
        train_metrics=epoch the minibatch sums the step's evaluation reads)."""
        save_checkpoint(self.ckpt_path, checkpoint_state(
            self.cfg, self.task, step, elapsed_s, runlog.metrics.record_before(step),
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(), schedule=self.schedule.state_dict(),
            **replay, **({"grokfast": self.grad_filter.state_dict()} if self.grad_filter else {})))

    def replay_state(self) -> dict[str, Any]:
        """The state a resume at this step boundary needs to replay the step exactly."""
        state: dict[str, Any] = {"rng": rng_state(self.sampler)}
        if self.epoch_metrics:
            state["train_metrics"] = self.epoch_metrics.state_dict()
        return state

    def restore(self) -> None:
        state = load_checkpoint(self.ckpt_path, self.cfg, self.task)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"], self.sampler, self.ckpt_path)
        if self.grad_filter:
            self.grad_filter.load_state_dict(state["grokfast"])
        if self.epoch_metrics and "train_metrics" in state:
            self.epoch_metrics.load_state_dict(state["train_metrics"])
        self.start, self.elapsed_before = state["step"], state["elapsed_s"]
        self.metrics_record = state.get("metrics")  # None: written before it was kept


def build_task_and_model(cfg: DictConfig, device: torch.device) -> tuple[TaskData, nn.Module]:
    """The seed's task and model, in the order of random draws every run uses: the model's
    init from the seed, then (`task.split_seed=global`) the split from the global generator
    where the init left it, as Grokfast's main.py; a split of its own draws from its own."""
    torch.manual_seed(cfg.seed)
    global_split = cfg.task.get("split_seed") == "global"
    start = torch.get_rng_state()
    task = build_task(cfg, device)
    if global_split:  # this one only sizes the model; its split is drawn again after it
        torch.set_rng_state(start)
    model = build_model(cfg.model, task)
    if global_split:
        task = build_task(cfg, device)
    return task, model


def build_session(cfg: DictConfig, run_dir: Path) -> Session:
    device = resolve_device(cfg.device)
    task, model = build_task_and_model(cfg, device)
    apply_threads(cfg.get("threads", "auto"), model, device)
    rescale(model, cfg.alpha)
    model.to(device).train()
    accelerate(model, cfg, device)
    optimizer, schedule = build_optimizer(cfg.optimizer, cfg.weight_decay, model)
    sampler = build_sampler(cfg, len(task.train), device)
    return Session(cfg, run_dir, task, model, optimizer, schedule, sampler, build_loss(cfg.loss),
                   EarlyStop(cfg.stop), build_grad_filter(cfg.grokfast, model),
                   build_train_metrics(cfg, sampler))


def train(cfg: DictConfig, run_dir: Path, stop: StopSignals | None = None) -> Outcome:
    """Train one run into `run_dir`, resuming from its checkpoint when there is one.

    With `stop`, a SIGINT/SIGTERM ends the loop at the next step boundary (status
    interrupted, a checkpoint at that step).
    """
    session = build_session(cfg, run_dir)
    if cfg.resume and session.ckpt_path.exists():
        session.restore()
        check(session.start <= cfg.steps, "steps", cfg.steps,
              f"at least the checkpoint's step {session.start} to continue this run "
              "(or resume=false, or a new run folder)")
        log.info("resuming from %s at step %d", session.ckpt_path, session.start)
    runlog = RunLog(cfg, run_dir, session.task.group_names)
    try:
        accept(cfg, run_dir, runlog, session.start, session.metrics_record)
        task = session.task
        log.info("task %s: %d train / %d test samples; %d parameters; device %s",
                 cfg.task.name, len(task.train), len(task.test),
                 sum(p.numel() for p in session.model.parameters()), task.train.y.device)
        stop = stop or StopSignals()
        with stop.deferring():
            return _loop(session, runlog, stop)
    finally:
        runlog.close()


def _loop(s: Session, runlog: RunLog, stop: StopSignals) -> Outcome:
    cfg, model, train_split, test_split = s.cfg, s.model, s.task.train, s.task.test
    n_groups = s.task.n_groups
    sizes = (train_split.group_sizes(n_groups), test_split.group_sizes(n_groups))
    device = train_split.y.device
    # With dropout the training forward is noisy: train metrics then come from an eval pass.
    noisy = any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
    epoch_metrics = None if noisy else s.epoch_metrics
    bar = tqdm(total=cfg.steps, initial=s.start, disable=not _show_bar(cfg), file=sys.stderr,
               dynamic_ncols=True, leave=True)
    s.early_stop.replay(read_metrics(runlog.metrics.path))  # the rows kept before the checkpoint
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    began = time.perf_counter()
    outcome = Outcome("completed", s.task, str(device), extra={"stopped_early": False})
    for step in range(s.start, cfg.steps + 1):
        if stop.signum is not None:
            # A step boundary: the state after `step` updates and the RNG before its draws,
            # so a resume from here replays exactly. A non-finite state is not kept.
            if not bool(nonfinite):
                s.save(step, s.elapsed_before + time.perf_counter() - began,
                       s.replay_state(), runlog)
            outcome.status, outcome.signum = "interrupted", stop.signum
            outcome.error = f"interrupted by {signal_name(stop.signum)} at step {step}"
            break
        evaluating = is_eval_step(cfg, step)
        if evaluating:
            # Taken before this step's sampling, so a resume from here replays it exactly.
            snapshot = s.replay_state()
        indices = s.sampler.indices()
        batch = train_split if indices is None else train_split.subset(indices)
        logits = model(batch.x, batch.mask)
        loss = s.loss_fn(logits, batch.y)
        nonfinite |= ~torch.isfinite(loss.detach())

        if evaluating:
            model.eval()
            if s.sampler.full_batch and not noisy:  # the training forward saw the whole split
                train_stats = (loss.detach(),
                               correct_counts(logits, batch.y, batch.group, n_groups))
            else:
                train_stats = (epoch_metrics and epoch_metrics.take()) or evaluate(
                    model, train_split, cfg.eval_batch_size, s.loss_fn, n_groups)
            test_stats = evaluate(model, test_split, cfg.eval_batch_size, s.loss_fn, n_groups)
            model.train()
            (row,) = metrics_rows(step, train_stats, test_stats, l2_norm(model), [sizes[0]],
                                  sizes[1], s.task.group_names,
                                  lr=s.schedule.get_last_lr()[0],
                                  elapsed_s=s.elapsed_before + time.perf_counter() - began)
            runlog.write(row)
            _report(bar, row)
            if bool(nonfinite) or not finite(row):
                outcome.status, outcome.error = "diverged", diverged_error(step, s.ckpt_path)
                break
            stopped = s.early_stop.update(row)
            if is_ckpt_step(cfg, step) or stopped:
                s.save(step, row["elapsed_s"], snapshot, runlog)
            if cfg.save_every and step % cfg.save_every == 0:
                save_snapshot(model, s.run_dir, step, cfg)
            if stopped:
                log.info("stopping early at step %d: test_acc >= %s for %d evaluations", step,
                         cfg.stop.test_acc, cfg.stop.patience)
                outcome.extra["stopped_early"] = True
                break
        if step == cfg.steps:
            break
        if epoch_metrics:
            epoch_metrics.add(loss.detach(), correct_counts(logits, batch.y, batch.group,
                                                            n_groups), len(batch), s.sampler.epoch)
        s.optimizer.zero_grad(set_to_none=True)
        (loss + _auxiliary_loss(model)).backward()
        if s.grad_filter:
            s.grad_filter()
        s.optimizer.step()
        s.schedule.step()
        bar.update(1)
    bar.close()
    if cfg.save_every:
        outcome.extra["snapshots"] = snapshot_files(s.run_dir)
    return outcome


def _auxiliary_loss(model: nn.Module) -> torch.Tensor | float:
    """A model's own term of the training objective (olmoe: the router's load-balancing loss
    of this step's forward), 0 for models without one."""
    return model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else 0.0


def _show_bar(cfg: DictConfig) -> bool:
    return cfg.progress == "bar" or (cfg.progress == "auto" and sys.stderr.isatty())


def _report(bar: tqdm, row: dict[str, float]) -> None:
    text = (f"step {row['step']} train_loss {row['train_loss']:.4f} train_acc "
            f"{row['train_acc']:.4f} test_loss {row['test_loss']:.4f} test_acc "
            f"{row['test_acc']:.4f}")
    progress_log.info(text)
    bar.set_postfix(train_acc=f"{row['train_acc']:.3f}", test_acc=f"{row['test_acc']:.3f}",
                    train_loss=f"{row['train_loss']:.3g}", test_loss=f"{row['test_loss']:.3g}",
                    refresh=False)
