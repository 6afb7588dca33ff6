"""What the equation tasks share (`task=modadd`, `modmix`, `s5`): the binary operations mod
p, the token layout of each format, and the split of all equations into train / test.

`a op b = c` is written in a format (see modadd.py's table): the model reads every token but
the last and predicts the last, the answer c; loss and accuracy are on that token alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from grok_cli.errors import check
from grok_cli.tasks.base import Split, TaskData, prune, split_indices

Op = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _inverse(b: torch.Tensor, p: int) -> torch.Tensor:
    """b^(p-2) mod p, the inverse of b != 0 (Fermat's little theorem)."""
    return torch.tensor([pow(v, p - 2, p) for v in range(p)])[b]


# name -> (the op's token text, c before the final mod p). Every result is reduced mod p
# once; int64 holds a³ + ab² + b exactly for p < 10^6, far beyond any p whose p² pairs fit.
OPS: dict[str, tuple[str, Op]] = {
    "add": ("+", lambda a, b, p: a + b),
    "sub": ("-", lambda a, b, p: a - b),
    "mul": ("*", lambda a, b, p: a * b),
    "div": ("/", lambda a, b, p: a * _inverse(b, p)),
    "x2y2": ("x²+y²", lambda a, b, p: a**2 + b**2),
    "x2xyy2": ("x²+xy+y²", lambda a, b, p: a**2 + a * b + b**2),
    "x3xy": ("x³+xy", lambda a, b, p: a**3 + a * b),
    "x3xy2y": ("x³+xy²+y", lambda a, b, p: a**3 + a * b**2 + b),
}
def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def check_split(task: DictConfig) -> None:
    check(isinstance(task.train_split, int | float) and 0 < task.train_split < 1,
          "task.train_split", task.train_split, "a fraction strictly between 0 and 1")


def check_modulus(p: object) -> None:
    check(isinstance(p, int) and is_prime(p) and p >= 3, "task.p", p, "a prime number >= 3")


def equations(p: int, op: str, fmt: str = "cds", nonzero_b: bool = False) -> torch.Tensor:
    """All equations of the op as token ids, one row each (div always skips b = 0)."""
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
    if op == "div" or nonzero_b:
        a, b = a[b != 0], b[b != 0]
    return rows(fmt, p, a, b, OPS[op][1](a, b, p) % p)


def tokens(fmt: str, names: list[str], symbol: str, modulus: int | None = None) -> list[str]:
    """The vocabulary of a format over the elements `names` (ids 0..n-1). Only cds writes the
    modulus, as the token after the elements (its id n is the number n, as in the paper)."""
    if fmt == "cds":
        return [*names, str(modulus), symbol, "=", "%"]
    return [*names, "=", symbol] if fmt == "power" else [*names, "="]


def rows(fmt: str, n: int, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Equations `a op b = c` over n elements as rows of token ids, in the order of tokens()."""
    cds, power, nanda = [a, n + 1, b, n + 3, n, n + 2, c], [a, n + 1, b, n, c], [a, b, n, c]
    order = {"cds": cds, "power": power, "nanda": nanda}[fmt]
    return torch.stack([v if isinstance(v, torch.Tensor) else torch.full_like(a, v)
                        for v in order], 1)


def equation_task(cfg: DictConfig, seqs: torch.Tensor, vocab_size: int, n_classes: int,
                  device: torch.device) -> TaskData:
    """Split all equations with `task.split_seed`, prune the training split, put on device.

    `split_seed=global` draws the split from torch's global generator, where it stands when
    the task is built: the trainer builds it again after the model (`build_task_and_model`),
    so the split follows the seed and the model's init, as Grokfast's main.py draws it."""
    task = cfg.task
    train_idx, test_idx = split_indices(len(seqs), task.train_split, task.split_seed)
    return split_task(cfg, answer_split(seqs), (train_idx, test_idx), vocab_size,
                      n_classes, device)


def answer_split(seqs: torch.Tensor, group: torch.Tensor | None = None) -> Split:
    """The model reads everything up to `=` and predicts c: the loss is on the answer only."""
    return Split(seqs[:, :-1], seqs[:, -1], group=group)


def split_task(cfg: DictConfig, full: Split, indices: tuple[torch.Tensor, torch.Tensor],
               vocab_size: int, n_classes: int, device: torch.device,
               group_names: list[str] | None = None) -> TaskData:
    """Cut `full` into its (train, test) `indices`, prune the training split, put on device."""
    train = prune(full.subset(indices[0]), cfg.data_fraction, cfg.train_size, cfg.seed)
    return TaskData(train=train.to(device), test=full.subset(indices[1]).to(device),
                    vocab_size=vocab_size, n_classes=n_classes, kind="lm",
                    group_names=group_names)


def answer_classes(fmt: str, n: int, vocab_size: int) -> int:
    """cds keeps its whole-vocabulary answer head; power and nanda answer with an element."""
    return vocab_size if fmt == "cds" else n
