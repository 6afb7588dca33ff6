"""The training loop: one readable function, data on the device, host syncs only at evaluation.

It trains a `Members` (members.py): one run (K = 1, `grok run`: the plain model, checkpoints
and exact resume) or a batched sweep's K members (one vmapped model, batched.py). The loss,
gradient filter, early stop, auxiliary loss, snapshots and loggers are levers (levers.py),
each called at its one place below. The minibatch is drawn at one place (`members.batch()`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from grok_cli.errors import check
from grok_cli.runfolder import METRICS
from grok_cli.runfolder.checkpoints import save_checkpoint
from grok_cli.runfolder.metrics import MetricsLog, metric_columns
from grok_cli.runfolder.record import RunFolder
from grok_cli.training.checkpoint import check_record, checkpoint_state, load_checkpoint
from grok_cli.training.device import rng_state, set_rng_state
from grok_cli.training.evaluation import (
    correct_counts,
    evaluate,
    finite,
    metrics_rows,
)
from grok_cli.training.levers import Lever, build_levers
from grok_cli.training.loggers import build_loggers
from grok_cli.training.losses import Loss, build_loss
from grok_cli.training.members import Member, Members, Outcome, build_member
from grok_cli.training.optim import build_optimizer
from grok_cli.training.signals import StopSignals, signal_name

log = logging.getLogger("grok")
progress_log = logging.getLogger("grok.progress")


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
        self.metrics = MetricsLog(run_dir / METRICS, metric_columns(groups))
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
        check_record(folder, cfg)
    rows = runlog.metrics.kept_rows(start, metrics_record)
    folder.write_record(cfg)
    runlog.metrics.start(rows)
    folder.restart_from(start)


@dataclass
class Session:
    """What the loop trains: the members, their optimizer, schedule, loss and levers; a
    single run resumed from its checkpoint starts at `start`."""

    members: Members
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Loss
    levers: list[Lever]
    start: int = 0
    elapsed_before: float = 0.0
    metrics_record: dict[str, Any] | None = None  # of the rows before `start` (checkpoint's)
    saved: dict[str, Any] = field(default_factory=dict)  # the levers' checkpointed states

    @property
    def model(self) -> torch.nn.Module:  # a single run's
        return self.members.all[0].model

    @property
    def task(self) -> Any:
        return self.members.all[0].task

    def save(self, step: int, elapsed_s: float, replays: list[dict[str, Any]],
             keep: Sequence[bool]) -> None:
        """Each live member's checkpoints/last.pt, in a single run's format; `replays`: what
        `_replays` took before the step's draws."""
        for k, member in enumerate(self.members.all):
            if not member.live or not keep[k]:
                continue
            states = {lever.key: lever.state_dict(k) for lever in self.levers}
            save_checkpoint(member.ckpt_path, checkpoint_state(
                member.cfg, member.task, step, elapsed_s,
                member.runlog.metrics.record_before(step),
                model=self.members.own_model(k).state_dict(),
                optimizer=self.members.optimizer_state(self.optimizer, k),
                schedule=self.schedule.state_dict(), **replays[k],
                **{key: state for key, state in states.items() if state is not None}))

    def restore(self) -> None:
        """A single run continues from its checkpoint."""
        member = self.members.all[0]
        state = load_checkpoint(member.ckpt_path, member.cfg, member.task)
        member.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"], self.members.samplers[0], member.ckpt_path)
        if self.members.epoch_metrics and "train_metrics" in state:
            self.members.epoch_metrics.load_state_dict(state["train_metrics"])
        self.start, self.elapsed_before = state["step"], state["elapsed_s"]
        self.metrics_record = state.get("metrics")  # None: written before it was kept
        self.saved = state


def build_session(cfg: DictConfig, run_dir: Path) -> Session:
    """A single run's session: its levers checked first, then its member built."""
    levers, loss_fn = build_levers(cfg), build_loss(cfg.loss)
    return session_of([build_member(cfg, run_dir)], levers, loss_fn)


def session_of(members: list[Member], levers: list[Lever], loss_fn: Loss) -> Session:
    group = Members(members)
    optimizer, schedule = build_optimizer(group.cfg.optimizer, group.cfg.weight_decay,
                                          group.module)
    return Session(group, optimizer, schedule, loss_fn, levers)


def train(cfg: DictConfig, run_dir: Path, stop: StopSignals | None = None) -> Outcome:
    """Train one run into `run_dir`, resuming from its checkpoint when there is one.

    With `stop`, a SIGINT/SIGTERM ends the loop at the next step boundary (status
    interrupted, a checkpoint at that step).
    """
    session = build_session(cfg, run_dir)
    (member,) = session.members.all
    if cfg.resume and member.ckpt_path.exists():
        session.restore()
        check(session.start <= cfg.steps, "steps", cfg.steps,
              f"at least the checkpoint's step {session.start} to continue this run "
              "(or resume=false, or a new run folder)")
        log.info("resuming from %s at step %d", member.ckpt_path, session.start)
    member.runlog = RunLog(cfg, run_dir, member.task.group_names)
    try:
        accept(cfg, run_dir, member.runlog, session.start, session.metrics_record)
        task = member.task
        log.info("task %s: %d train / %d test samples; %d parameters; device %s",
                 cfg.task.name, len(task.train), len(task.test),
                 sum(p.numel() for p in member.model.parameters()), task.train.y.device)
        stop = stop or StopSignals()
        with stop.deferring():
            train_members(session, stop)
        return member.outcome
    finally:
        member.runlog.close()


def train_members(s: Session, stop: StopSignals) -> None:
    """The loop: K members step together; each member's outcome says how its run ended."""
    members, cfg = s.members, s.members.cfg
    first = members.all[0].task
    train_split, test_split, n_groups = first.train, first.test, first.n_groups
    n_train = [m.task.train.group_sizes(n_groups) for m in members.all]
    n_test = test_split.group_sizes(n_groups)
    noisy = members.noisy()
    bar = tqdm(total=cfg.steps, initial=s.start, disable=len(members) > 1 or not _show_bar(cfg),
               file=sys.stderr, dynamic_ncols=True, leave=True)
    for lever in s.levers:
        lever.start(members)
        if s.saved.get(lever.key) is not None:
            lever.load_state_dict(s.saved[lever.key])
    # The per-step hooks of the levers that have them: the others cost the step nothing.
    extra_loss, after_backward = (_acting(s.levers, hook) for hook in ("extra_loss",
                                                                       "after_backward"))
    nonfinite = torch.zeros(len(members) if members.batched else (), dtype=torch.bool,
                            device=train_split.y.device)
    began = time.perf_counter()
    for step in range(s.start, cfg.steps + 1):
        if stop.signum is not None:
            # A step boundary: the state after `step` updates and the RNG before its draws,
            # so a resume from here replays exactly. A non-finite state is not kept.
            s.save(step, s.elapsed_before + time.perf_counter() - began, _replays(members),
                   (~nonfinite).reshape(-1).tolist())
            for member in members.all:
                if member.live:
                    member.outcome.status, member.outcome.signum = "interrupted", stop.signum
                    member.outcome.error = (f"interrupted by {signal_name(stop.signum)} at "
                                            f"step {step}")
            break
        evaluating = is_eval_step(cfg, step)
        if evaluating:
            # Taken before this step's sampling, so a resume from here replays it exactly.
            replays = _replays(members)
        batch = members.batch()  # the one place a minibatch is drawn
        logits = members.forward(batch.x, batch.mask)
        loss = members.per_member(lambda out, y, _: s.loss_fn(out, y), logits, batch)
        nonfinite |= ~torch.isfinite(loss.detach())

        if evaluating:
            members.train(False)
            if members.full_batch and not noisy:  # the training forward saw the whole split
                right = members.per_member(
                    lambda out, y, group: correct_counts(out, y, group, n_groups), logits, batch)
                train_stats = (loss.detach(), right)
            else:  # train_metrics=epoch: the epoch's minibatches when exactly one has passed
                epoch = members.epoch_metrics and members.epoch_metrics.take()
                train_stats = epoch or evaluate(members.forward_shared, train_split,
                                                cfg.eval_batch_size, s.loss_fn, n_groups)
            test_stats = evaluate(members.forward_shared, test_split, cfg.eval_batch_size,
                                  s.loss_fn, n_groups)
            members.train(True)
            rows = metrics_rows(step, train_stats, test_stats, members.l2_norm(), n_train,
                                n_test, first.group_names, lr=s.schedule.get_last_lr()[0],
                                elapsed_s=s.elapsed_before + time.perf_counter() - began)
            bad = nonfinite.reshape(-1).tolist()
            for member, row, diverged in zip(members.all, rows, bad, strict=True):
                if member.live:
                    member.runlog.write(row)
                    if diverged or not finite(row):
                        member.outcome.status = "diverged"
                        member.outcome.error = diverged_error(step, member.ckpt_path)
            if not members.batched:
                _report(bar, rows[0])
            if not any(m.live for m in members.all):
                break
            stopped = any([lever.should_stop(members, rows) for lever in s.levers])
            if is_ckpt_step(cfg, step) or stopped:
                s.save(step, rows[0]["elapsed_s"], replays, [True] * len(members))
            for lever in s.levers:
                lever.after_eval(members, step)
            if stopped:
                break
        if step == cfg.steps:
            break
        if members.epoch_metrics:  # device tensors: no host sync
            members.epoch_metrics.add(loss.detach(), correct_counts(
                logits, batch.y, batch.group, n_groups), len(batch), members.samplers[0].epoch)
        s.optimizer.zero_grad(set_to_none=True)
        objective = loss.sum() if members.batched else loss
        (objective + sum(lever.extra_loss(members) for lever in extra_loss)).backward()
        for lever in after_backward:
            lever.after_backward(members)
        s.optimizer.step()
        s.schedule.step()
        bar.update(1)
    bar.close()
    for lever in s.levers:
        lever.finish(members)


def _acting(levers: list[Lever], hook: str) -> list[Lever]:
    return [lever for lever in levers if lever.acts(hook)]


def _replays(members: Members) -> list[dict[str, Any]]:
    """What each member's checkpoint needs to replay the step ahead: its random state (a
    single run's now; a batched member's from after its init: full batch, no dropout, nothing
    draws from it) and, with train_metrics=epoch, the minibatch sums its next evaluation reads."""
    if members.batched:
        return [{"rng": rng} for rng in members.init_rng]
    replay = {"rng": rng_state(members.samplers[0])}
    if members.epoch_metrics:
        replay["train_metrics"] = members.epoch_metrics.state_dict()
    return [replay]


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
