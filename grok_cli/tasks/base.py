"""What every task hands the trainer: token tensors on the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from grok_cli.errors import check, is_int


@dataclass
class Split:
    """Inputs `x` (token ids, [N, T]; an image task's pixels, float [N, P]), labels `y` ([N]),
    an optional attention `mask`, and for a task of several data groups (`task=modmix`) each
    sample's `group` id ([N])."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None
    group: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.x[index], self.y[index], *(None if t is None else t[index]
                                                     for t in (self.mask, self.group)))

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device), *(None if t is None else t.to(device)
                                                             for t in (self.mask, self.group)))

    def group_sizes(self, n_groups: int) -> list[int]:
        """Samples per group id (one group, the whole split, for a task without groups)."""
        if self.group is None:
            return [len(self)]
        return torch.bincount(self.group, minlength=n_groups).tolist()


@dataclass
class TaskData:
    train: Split
    test: Split
    vocab_size: int
    n_classes: int
    # "lm": the label is the next token after x (decoder models read the last position);
    # "classify": the label is a class id (encoder models use a classification head);
    # "image": x holds pixels, not token ids (model=image_mlp only).
    kind: str = "lm"
    label_names: list[str] | None = None  # classify: the name of each class id, for records
    # Text tasks: a hash of the tokenizer that made the ids. `tokenizer=auto` may resolve
    # differently on another node, and a checkpoint must not resume on another vocabulary.
    tokenizer_fingerprint: str | None = None
    # Several data groups (`task=modmix`): their names by group id (Split.group); None: one.
    group_names: list[str] | None = None

    @property
    def n_groups(self) -> int:
        return len(self.group_names or [""])


def split_indices(n: int, train_split: float, seed: int | str | torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle n items with `seed` (or a generator that draws on; `global`: torch's global
    generator, where it stands: the trainer builds such a task after the model) and cut them
    into train / test index tensors."""
    check(isinstance(seed, torch.Generator) or is_int(seed) or seed == "global",
          "task.split_seed", seed, "an integer (a split of its own, fixed across seeds) or "
          "global (torch's generator after the model is built: the split follows `seed`)")
    if seed == "global":
        seed = torch.default_generator
    if isinstance(seed, int):
        seed = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=seed)
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
