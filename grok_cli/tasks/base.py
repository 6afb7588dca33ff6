"""What every task hands the trainer: token tensors on the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grok_cli.errors import check


@dataclass
class Split:
    """Inputs `x` (token ids, [N, T]), labels `y` ([N]) and an optional attention `mask`."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> Split:
        mask = None if self.mask is None else self.mask[index]
        return Split(self.x[index], self.y[index], mask)

    def to(self, device: torch.device) -> Split:
        mask = None if self.mask is None else self.mask.to(device)
        return Split(self.x.to(device), self.y.to(device), mask)


@dataclass
class TaskData:
    train: Split
    test: Split
    vocab_size: int
    n_classes: int
    # "lm": the label is the next token after x (decoder models read the last position);
    # "classify": the label is a class id (encoder models use a classification head).
    kind: str = "lm"
    label_names: list[str] | None = None  # classify: the name of each class id, for records
    # Text tasks: a hash of the tokenizer that made the ids. `tokenizer=auto` may resolve
    # differently on another node, and a checkpoint must not resume on another vocabulary.
    tokenizer_fingerprint: str | None = None


def split_indices(n: int, train_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle n items with `seed` and cut them into train / test index tensors."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = int(n * train_split)  # floor: 9,576 / 3,193 for p = 113, as in the paper
    return order[:n_train], order[n_train:]


def prune(train: Split, data_fraction: float, train_size: int | None, seed: int) -> Split:
    """Keep a uniform random subset of the training split, without replacement.

    The subsets are nested: for one seed, a smaller fraction keeps a prefix of the same
    permutation as a larger one, as in the Critical Data Size paper's uniform pruning.
    """
    n = len(train)
    if train_size is None:
        keep = max(1, round(n * data_fraction))
    else:
        check(1 <= train_size <= n, "train_size", train_size,
              f"an integer from 1 to the training split's size ({n})")
        keep = train_size
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return train.subset(order[:keep].sort().values)
