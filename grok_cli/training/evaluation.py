"""What an evaluation computes, for one run or K members: exact accuracies (`evaluate`,
`split_sums`), the metrics.csv rows (`metrics_rows`) and the divergence test (`finite`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from grok_cli.tasks import Split
from grok_cli.training.losses import Loss, cross_entropy


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
