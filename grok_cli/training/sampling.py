"""The `sampling` config group: which training examples each minibatch step takes.

`replacement`: every step draws `batch_size` indices uniformly with replacement
(`torch.randint`), the way `grok` has always sampled. `epoch`: the training split is
reshuffled once per epoch and cut into consecutive batches of `batch_size`, so every example
is seen exactly once per epoch; the last batch is short unless `drop_last` (4,656 examples in
512s: 9 × 512 + 48). Each epoch's permutation reorders the previous epoch's order, as
Grokfast's main.py does (`train_data = train_data[:, torch.randperm(n)]`). With
`shuffle: false` every epoch takes the split in its own order (a DataLoader without shuffle,
cycled: the Critical Data Size code's text loop), and nothing is drawn.

`generator`: `own` draws from a generator of the sampler's own seeded with `seed` (on the
run's device for `replacement`); `global` continues torch's global CPU generator from where
the model's init and the split left it, as the sources that draw everything from one
generator do (Grokfast's main.py). The generator's state, and for `epoch` the current order
and the position in it, are part of every checkpoint, so a resumed run draws exactly the
batches the uninterrupted run would have drawn.

A full-batch run (batch_size null or at least the split) draws nothing: `indices()` is None.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli import registry
from grok_cli.errors import check, check_choice

GENERATORS = ("own", "global")


class Sampler:
    """One run's minibatch indices, step after step; `state_dict` is taken before a step's
    draws, so a checkpoint written there replays the step exactly."""

    draws_on_device = False  # an own generator on the run's device (else the CPU's)

    def __init__(self, cfg: DictConfig, n: int, batch_size: int | None, seed: int,
                 device: torch.device) -> None:
        self.n, self.device = n, device
        self.batch_size = None if batch_size is None or batch_size >= n else batch_size
        if cfg.generator == "own":
            on = device if self.draws_on_device else torch.device("cpu")
            self.generator = torch.Generator(on).manual_seed(seed)
        else:  # the global stream's state now, after the model and the split were drawn
            self.generator = torch.Generator()
            self.generator.set_state(torch.get_rng_state())

    def to_device(self, drawn: torch.Tensor) -> torch.Tensor:
        """Indices drawn on the CPU, on the run's device without a host sync (a pinned copy,
        non-blocking: a pageable copy to a GPU would wait for the queued steps)."""
        if drawn.device == self.device:
            return drawn
        if self.device.type == "cuda":
            drawn = drawn.pin_memory()
        return drawn.to(self.device, non_blocking=True)

    @property
    def full_batch(self) -> bool:
        return self.batch_size is None

    def indices(self) -> torch.Tensor | None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's `rng` entries of the sampler (`sampler`: the generator's state,
        the key checkpoints have always had)."""
        return {"sampler": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["sampler"])


class Replacement(Sampler):
    draws_on_device = True

    def indices(self) -> torch.Tensor | None:
        if self.full_batch:
            return None
        return self.to_device(torch.randint(self.n, (self.batch_size,), generator=self.generator,
                                            device=self.generator.device))


class Epoch(Sampler):
    def __init__(self, cfg: DictConfig, n: int, batch_size: int | None, seed: int,
                 device: torch.device) -> None:
        super().__init__(cfg, n, batch_size, seed, device)
        self.drop_last, self.shuffle = cfg.drop_last, cfg.shuffle
        # The split's own order before the first reshuffle, kept on the run's device: a step
        # slices it there; only a reshuffle (once an epoch) copies a permutation over.
        self.order = torch.arange(n, device=device)
        self.start = n  # the position in `order`; n: the next step begins an epoch
        self.epoch = 0  # epochs begun so far: the epoch of the last batch drawn

    def indices(self) -> torch.Tensor | None:
        if self.full_batch:
            return None
        end = self.start + self.batch_size
        if self.start >= self.n or (self.drop_last and end > self.n):
            if self.shuffle:
                self.order = self.order[self.to_device(torch.randperm(
                    self.n, generator=self.generator))]
            self.start, end = 0, self.batch_size
            self.epoch += 1
        batch = self.order[self.start:end]
        self.start = end
        return batch

    def state_dict(self) -> dict[str, Any]:
        # `order` is replaced, never changed in place, so the reference stays this state's.
        return {**super().state_dict(), "epoch_order": self.order, "epoch_start": self.start,
                "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.order, self.start = state["epoch_order"].to(self.device), state["epoch_start"]
        self.epoch = state["epoch"]


class EpochMetrics:
    """train_metrics=epoch: the training split's loss and correct answers summed over the
    minibatches since the last evaluation, each counted by the model that took its step
    (before the update), as Grokfast's main.py reports train accuracy. Only when those
    batches are exactly one epoch (every example once: sampling=epoch, drop_last false) is the
    sum a count over the whole split; otherwise (the first evaluation, after a resume, a
    short run's last step, another eval_every) `take` returns None and the caller evaluates
    the split itself."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reset()

    def reset(self) -> None:
        self.loss: Any = 0
        self.right: Any = 0
        self.seen, self.epochs = 0, set()

    def add(self, mean_loss: torch.Tensor, right: torch.Tensor, size: int, epoch: int) -> None:
        """One step's batch (device tensors: no host sync)."""
        self.loss, self.right = self.loss + mean_loss * size, self.right + right
        self.seen += size
        self.epochs.add(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The sums so far (new objects after every add and take: safe to keep as they are)."""
        return {"loss": self.loss, "right": self.right, "seen": self.seen,
                "epochs": sorted(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss, self.right, self.seen = state["loss"], state["right"], state["seen"]
        self.epochs = set(state["epochs"])

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean loss, correct counts) over the epoch just finished, or None; then empty."""
        whole = self.seen == self.n and len(self.epochs) == 1
        stats = (self.loss / self.n, self.right) if whole else None
        self.reset()
        return stats


def check_config(sampling: DictConfig) -> None:
    """The sampling group alone, before anything is built (config.validate_run_config)."""
    check_choice("sampling.generator", sampling.generator, GENERATORS)
    if "drop_last" in sampling:
        check(isinstance(sampling.drop_last, bool), "sampling.drop_last", sampling.drop_last,
              "true (drop the short last batch of an epoch) or false (keep it)")
    if "shuffle" in sampling:
        check(isinstance(sampling.shuffle, bool), "sampling.shuffle", sampling.shuffle,
              "true (a reshuffle per epoch) or false (the split's own order every epoch)")


def check_train_metrics(cfg: DictConfig) -> None:
    """`train_metrics=epoch` needs batches that are whole epochs (sampling=epoch)."""
    mode = cfg.get("train_metrics", "split")
    check_choice("train_metrics", mode, ("split", "epoch"))
    check(mode == "split" or cfg.sampling.get("name") == "epoch", "train_metrics", mode,
          "split with sampling=replacement (epoch needs sampling=epoch: every example once)")


def build_train_metrics(cfg: DictConfig, sampler: Sampler) -> EpochMetrics | None:
    """The `train_metrics` key: split (None: the loop evaluates the whole training split) or
    epoch (`EpochMetrics` over an Epoch sampler's minibatches). A full-batch run needs none:
    its training forward already sees the whole split."""
    check_train_metrics(cfg)
    if cfg.get("train_metrics", "split") == "split" or sampler.full_batch:
        return None
    check(isinstance(sampler, Epoch), "train_metrics", cfg.train_metrics,
          "split with this sampler (epoch needs whole epochs of batches: sampling=epoch)")
    return EpochMetrics(sampler.n)


def replacement(cfg: DictConfig, n: int, batch_size: int | None, seed: int,
                device: torch.device) -> Sampler:
    """sampling=replacement: uniform draws with replacement every step."""
    return Replacement(cfg, n, batch_size, seed, device)


def epoch(cfg: DictConfig, n: int, batch_size: int | None, seed: int,
          device: torch.device) -> Sampler:
    """sampling=epoch: every example once per epoch, cut into batches in order (reshuffled
    each epoch unless shuffle is false)."""
    return Epoch(cfg, n, batch_size, seed, device)


def build_sampler(cfg: DictConfig, n: int, device: torch.device) -> Sampler:
    """The run config's sampler over a training split of `n` examples, built once."""
    registry.check("sampling", cfg.sampling)  # as build_model does: callers that skipped it
    return registry.build("sampling", cfg.sampling, n, cfg.batch_size, cfg.seed, device)
