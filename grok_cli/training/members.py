"""The K runs one training loop trains: K = 1 a plain model, K > 1 a batched sweep's members.

A batched sweep's members share an architecture and differ only in their initial weights and
training subsets. Their parameters are stacked along a new leading axis
(`torch.func.stack_module_state`) and one `vmap`-ed `functional_call` runs all K forwards as
batched matmuls. Each member's loss is the mean over its own rows, so the gradient of the
summed loss with respect to member k's slice is member k's gradient; Adam(W) updates each
element alone, so one optimizer over the stacked tensors is K optimizers. Members with
different train sizes are padded to the largest (padding never enters a loss; a padded task's
attention mask travels with its member).

For K = 1 every method is the plain model's own op, so a single run's numbers, checkpoints and
resume are those of a loop that never heard of members.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from grok_cli.errors import check
from grok_cli.models import build_model, l2_norm, l2_norm_of, rescale
from grok_cli.runfolder import last_checkpoint
from grok_cli.tasks import Split, TaskData, build_task
from grok_cli.threads import apply_threads
from grok_cli.training.device import accelerate, apply_flush_denormal, resolve_device, rng_state
from grok_cli.training.sampling import Sampler, build_sampler, build_train_metrics


@dataclass
class Outcome:
    status: str  # completed | diverged | interrupted | failed
    task: TaskData
    device: str
    error: str | None = None
    signum: int | None = None  # the signal that interrupted it
    extra: dict[str, Any] = field(default_factory=dict)  # more summary.json fields


@dataclass
class Member:
    """One run: its config, folder, data, own module (its checkpoints' weights) and outcome."""

    cfg: DictConfig
    run_dir: Path
    task: TaskData
    model: nn.Module
    outcome: Outcome
    sampler: Sampler  # its minibatches (sampling=)
    init_rng: dict[str, Any]  # the random state right after its init, as its run keeps it
    runlog: Any = None  # trainer.RunLog, once the run is accepted

    @property
    def ckpt_path(self) -> Path:
        return last_checkpoint(self.run_dir)

    @property
    def live(self) -> bool:
        return self.outcome.status == "completed"


def build_member(cfg: DictConfig, run_dir: Path) -> Member:
    """The one builder of a run: seed, data, model, threads (and flush_denormal), alpha,
    device, in this order (the order of RNG use a checkpoint's resume and a batched member's
    init both rely on)."""
    device = resolve_device(cfg.device)
    task, model = build_task_and_model(cfg, device)
    apply_flush_denormal(cfg, device, apply_threads(cfg.get("threads", "auto"), model, device))
    rescale(model, cfg.alpha)
    model.to(device).train()
    # Built right after the init (a `generator: global` sampler continues torch's stream from
    # there), and that state kept per member: a batched member's checkpoint is its own run's.
    sampler = build_sampler(cfg, len(task.train), device)
    return Member(cfg, run_dir, task, model, Outcome("completed", task, str(device),
                                                     extra={"stopped_early": False}),
                  sampler, rng_state(sampler))


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


class Members:
    """K members as one trainable thing: `module` for the optimizer, `forward` on each
    member's own batch, `forward_shared` on one split for all (the test set)."""

    def __init__(self, members: list[Member]) -> None:
        self.all, self.cfg = members, members[0].cfg
        device = members[0].task.train.y.device
        self.samplers = [m.sampler for m in members]
        self.init_rng = [m.init_rng for m in members]
        # train_metrics=epoch: a single run's train rows from its epoch's minibatches (K > 1
        # trains full batch, whose training forward already sees the whole split: None).
        self.epoch_metrics = build_train_metrics(self.cfg, self.samplers[0])
        check(self.epoch_metrics is None or not members[0].model.noisy, "train_metrics",
              "epoch", "split with a model whose training forward is noisy (dropout): its "
              "minibatches' counts would not be the model's")
        if len(members) == 1:
            self.module = members[0].model
            accelerate(self.module, self.cfg, device)
            self.forward = self.forward_shared = self.module
            self.named = dict(self.module.named_parameters())
            return
        self.stacked_train = _stack([m.task.train for m in members])
        stacked, buffers = stack_module_state([m.model for m in members])
        self.named = {name: nn.Parameter(t) for name, t in stacked.items()}
        self.module = nn.ParameterList(self.named.values())  # what the optimizer steps
        base = copy.deepcopy(members[0].model)  # a template: functional_call swaps weights in
        accelerate(base, self.cfg, device)  # precision=bf16: autocast on CUDA

        def call(p: dict, b: dict, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            return functional_call(base, (p, b), (x, mask))

        own, shared = vmap(call), vmap(call, in_dims=(0, 0, None, None))
        without_mask = vmap(call, in_dims=(0, 0, 0, None))
        self.forward = lambda x, mask: (own if mask is not None else without_mask)(
            self.named, buffers, x, mask)
        self.forward_shared = lambda x, mask: shared(self.named, buffers, x, mask)

    def __len__(self) -> int:
        return len(self.all)

    @property
    def batched(self) -> bool:
        return len(self.all) > 1

    @property
    def full_batch(self) -> bool:
        return self.samplers[0].full_batch

    def named_parameters(self) -> Any:
        """Stacked for K > 1 under each member's own names (grokfast filters them alike)."""
        return self.named.items()

    def batch(self) -> Split:
        """This step's training batch: the whole split, a minibatch, or K members' padded splits
        ([K, N_max, ...]; `n_train` tells each member's real rows)."""
        if self.batched:
            return self.stacked_train
        train = self.all[0].task.train
        indices = self.samplers[0].indices()
        return train if indices is None else train.subset(indices)

    def per_member(self, fn: Callable[..., torch.Tensor], logits: torch.Tensor, batch: Split
                   ) -> torch.Tensor:
        """`fn(logits, y, group)` of each member over its own rows: K = 1 the plain call, else
        stacked [K, ...] (each member's by the very op its single run uses)."""
        if not self.batched:
            return fn(logits, batch.y, batch.group)
        return torch.stack([
            fn(logits[k, :n], batch.y[k, :n], None if batch.group is None else batch.group[k, :n])
            for k, n in enumerate(len(m.task.train) for m in self.all)])

    def l2_norm(self) -> torch.Tensor:
        if not self.batched:
            return l2_norm(self.module)
        return torch.stack([l2_norm_of([p[k] for p in self.named.values()])
                            for k in range(len(self.all))])

    def noisy(self) -> bool:
        """With dropout the training forward is noisy: train metrics then need an eval pass."""
        return self.all[0].model.noisy

    def train(self, mode: bool = True) -> None:
        for member in self.all:
            member.model.train(mode)

    @torch.no_grad()
    def own_model(self, k: int) -> nn.Module:
        """Member k's own module, holding its weights (its slice of the stacked ones)."""
        model = self.all[k].model
        if self.batched:
            own = dict(model.named_parameters())
            for name, stacked in self.named.items():
                own[name].copy_(stacked[k])
        return model

    def optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict[str, Any]:
        """Member k's optimizer state, as its single run's optimizer would hold it."""
        state = optimizer.state_dict()
        if not self.batched:
            return state
        return {"state": {i: {key: value if key == "step" else value[k]
                              for key, value in s.items()} for i, s in state["state"].items()},
                "param_groups": state["param_groups"]}


def _stack(splits: list[Split]) -> Split:
    """Members' train splits padded to the largest: tensors [K, N_max, ...]."""
    def padded(tensors: list[torch.Tensor | None]) -> torch.Tensor | None:
        if tensors[0] is None:
            return None
        n_max = max(len(t) for t in tensors)
        out = tensors[0].new_zeros((len(tensors), n_max, *tensors[0].shape[1:]))
        for k, t in enumerate(tensors):
            out[k, : len(t)] = t
        return out

    return Split(*(padded([getattr(s, name) for s in splits])
                   for name in ("x", "y", "mask", "group")))
