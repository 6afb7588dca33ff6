"""Batched sweeps: K runs that share an architecture, trained in one process as one model.

`train_batched` checks the members can share one vmapped model (`check_batchable`: the config,
and each lever's own say, levers.py), builds each member as `grok run` would (members.build_member)
and trains them in the one loop (trainer.train_members, K > 1: members.py stacks them).

Same numbers as the unbatched runs to float rounding only: the batched kernels round
differently, and training is chaotic enough that such differences grow to ~1e-2 in the losses
within ~200 steps in fp32, as do those between two unbatched runs on 1 vs 2 threads; in
float64 they agree within 1e-5 over 200 steps (tests/test_batched.py; ~2e-7 measured).
Each member writes an ordinary run folder (metrics.csv, summary.json, curves.png,
checkpoints/last.pt in the unbatched format, .hydra/), so `grok cds`, and a later `grok run`
resuming it, cannot tell the difference.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grok_cli.config import validate_run_config
from grok_cli.errors import GrokError, check
from grok_cli.runfolder import last_checkpoint
from grok_cli.runfolder.record import RunFolder
from grok_cli.tasks import padded
from grok_cli.training.device import resolve_device
from grok_cli.training.levers import build_levers, unbatched
from grok_cli.training.losses import build_loss
from grok_cli.training.members import Member, build_member
from grok_cli.training.run import finish, record_failure, run_experiment, stop_interrupted
from grok_cli.training.signals import StopSignals
from grok_cli.training.trainer import RunLog, accept, session_of, train_members

log = logging.getLogger("grok")

# What the members of one batch may differ in; everything else must be equal.
MEMBER_KEYS = ("seed", "data_fraction", "train_size")


def shared_config(cfg: DictConfig) -> dict[str, Any]:
    """The config without the keys members may differ in (nor Hydra's own)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in plain.items() if k not in MEMBER_KEYS and k != "hydra"}


def check_batchable(cfgs: list[DictConfig]) -> None:
    """Refuse, before any job folder exists, members that cannot share one vmapped model or a
    lever that does not work for K > 1 members (it says so itself: `Lever.batched`)."""
    check(len(cfgs) > 0, "launcher", "batched", "a sweep with at least one member")
    first = shared_config(cfgs[0])
    for cfg in cfgs[1:]:
        other = shared_config(cfg)
        differing = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        check(not differing, "launcher", "batched",
              f"members that differ only in {', '.join(MEMBER_KEYS)} (these differ too: "
              f"{', '.join(differing)}); use launcher=basic")
    cfg = cfgs[0]
    seeds = {c.seed for c in cfgs}
    check(cfg.task.get("split_seed") != "global" or len(seeds) == 1, "task.split_seed",
          "global", "a fixed split with launcher=batched over seeds (the members share one "
          "test split; a global split follows each seed); use launcher=basic")
    check(cfg.batch_size is None, "launcher", "batched",
          f"full-batch runs (batch_size=null, got {cfg.batch_size}); use launcher=basic")
    check(cfg.model.get("dropout", 0) == 0, "launcher", "batched",
          "models without dropout (model.dropout=0); use launcher=basic")
    # A padded task (tasks.padded: its module says PADDED): the stacked forward would pass the
    # masks, but the text models are not vmapped (recurrent and HF kernels).
    check(not padded(cfg.task), "launcher", "batched",
          "tasks without padding (the modular and image tasks); use launcher=basic")
    check(not cfg.compile, "compile", cfg.compile,
          "false with launcher=batched (torch.compile does not take the vmapped members); "
          "use launcher=basic")
    check(not cfg.optimizer.get("orthogonal", False), "optimizer.orthogonal",
          cfg.optimizer.get("orthogonal"), "false with launcher=batched (⊥Grad would project "
          "across the stacked members); use launcher=basic")
    build_loss(cfg.loss)
    for lever in unbatched(build_levers(cfg)):
        value = OmegaConf.select(cfg, lever.key)
        check(False, lever.key, value.get("name") if isinstance(value, DictConfig) else value,
              f"{lever.batched}; use launcher=basic")


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
            if cfg.resume and last_checkpoint(run_dir).exists():
                statuses[i] = run_experiment(cfg, run_dir, isolate_failures=True)
                continue
            try:
                folder = held.enter_context(RunFolder(run_dir).claimed())
            except GrokError as err:  # another process holds it: not ours to write
                log.error("error: %s", err)
                statuses[i] = "failed"
                continue
            try:
                members[i] = _build(cfg, run_dir)
            except GrokError as err:
                log.error("error: %s: %s", run_dir, err)
                record_failure(cfg, folder, err, keep_new_folder=True)
                statuses[i] = "failed"
        if members:
            _train_members(list(members.values()), stop)
    statuses.update({i: member.outcome.status for i, member in members.items()})
    return [statuses[i] for i in range(len(member_cfgs))]


def _build(cfg: DictConfig, run_dir: Path) -> Member:
    """A member built exactly as its unbatched run (same seed, same order of RNG use) and
    accepted into its folder."""
    validate_run_config(cfg)
    resolve_device(cfg.device)  # refused in one line when it is not there
    member = build_member(cfg, run_dir)
    member.runlog = RunLog(cfg, run_dir, member.task.group_names)
    accept(cfg, run_dir, member.runlog, start=0)
    return member


def _train_members(members: list[Member], stop: StopSignals) -> None:
    try:
        cfg = members[0].cfg
        session = session_of(members, build_levers(cfg), build_loss(cfg.loss))
        with stop.deferring():
            train_members(session, stop)
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
            finish(member.outcome, member.cfg, member.run_dir, batched=True)
    interrupted = [m.outcome for m in members if m.outcome.status == "interrupted"]
    if interrupted:
        stop_interrupted(interrupted[0])
