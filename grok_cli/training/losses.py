"""The `loss` config group: the training and evaluation loss on the answer token.

`cross_entropy` is softmax cross-entropy in float32. `stablemax` is the StableMax
cross-entropy of Prieto et al. (2025), "Grokking at the edge of numerical stability": exp is
replaced by s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0), which grows only linearly, so the
correct class's probability cannot round to exactly 1 ("softmax collapse") and the gradient
does not vanish once the training set is fitted. Computed in float64, as the paper does.
`mse` is Omnigrok's squared error to the one-hot label (Liu, Michaud & Tegmark 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from grok_cli import registry

Loss = Callable[..., torch.Tensor]  # (logits [N, C], labels [N], reduction="mean") -> loss


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x >= 0 and 1 / (1 - x) for x < 0 (both 1 at 0: s is continuous).

    The negative branch reads x clamped to <= 0, so neither branch is ever evaluated where it
    is undefined (1 / (1 - x) at x = 1) and torch.where's backward never sees inf * 0."""
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            reduction: str = "mean") -> torch.Tensor:
    """-log(s(x_y) / sum_j s(x_j)), in float64."""
    s = stablemax_s(logits.double())
    nll = s.sum(-1).log() - s.gather(-1, labels[:, None]).squeeze(-1).log()
    return nll.sum() if reduction == "sum" else nll.mean()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    # float32 even under bf16 autocast (precision=bf16 casts only the model's forward)
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


def mse(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared error to the one-hot label, averaged over the classes: per sample, so "mean"
    over a batch is torch's nn.MSELoss on one-hot targets (Omnigrok's loss) and "sum" adds
    the samples as the other losses do."""
    target = F.one_hot(labels, logits.shape[-1]).float()
    per_sample = (logits.float() - target).pow(2).mean(-1)
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def build_loss(cfg: DictConfig) -> Loss:
    """The loss function of the `loss` config group (cfg.loss): the function its `_target_`
    names, (logits, labels, reduction="mean") applied to each member's own rows; for a record
    written before `_target_`, its name's (registry.target)."""
    registry.check("loss", cfg)  # a shipped name goes with its own function
    return registry.resolve("loss", registry.target("loss", cfg))
