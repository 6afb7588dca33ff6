"""`sampling=cyclic`: batches of batch_size taken in the training split's own order, wrapping
around at its end; nothing is drawn, so its only state is the position."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli.training.sampling import Sampler


class Cyclic(Sampler):
    def __init__(self, cfg: DictConfig, n: int, batch_size: int | None, seed: int,
                 device: torch.device) -> None:
        super().__init__(cfg, n, batch_size, seed, device)
        self.start = 0  # the first index of the next batch

    def indices(self) -> torch.Tensor | None:
        if self.full_batch:
            return None
        batch = (self.start + torch.arange(self.batch_size, device=self.device)) % self.n
        self.start = (self.start + self.batch_size) % self.n
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "cyclic_start": self.start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.start = state["cyclic_start"]


def build(cfg: DictConfig, n: int, batch_size: int | None, seed: int,
          device: torch.device) -> Sampler:
    return Cyclic(cfg, n, batch_size, seed, device)
