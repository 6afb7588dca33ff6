"""Binary operations over the residues mod p, written in one of three formats.

`task.op`: add, sub, mul, div (a * b^-1, b != 0), and Power et al.'s (2022) polynomials x2y2
(a² + b²), x2xyy2 (a² + ab + b²), x3xy (a³ + ab) and x3xy2y (a³ + ab² + b), all mod p.
`task.nonzero_b=true` keeps only b in 1..p-1 (Grokfast's x·y mod 97: 97 × 96 = 9,312 pairs).

`task.format` (the model reads every token but the last and predicts the last, the answer c;
loss and accuracy are on that token alone):

| format | sequence         | vocabulary (token ids)                  | size  | answer classes |
|--------|------------------|-----------------------------------------|-------|----------------|
| cds    | `a op b % p = c` | 0..p (p: the modulus), op, `=`, `%`     | p + 4 | p + 4 (all)    |
| power  | `a op b = c`     | 0..p-1, `=` (id p), op (id p + 1)       | p + 2 | p              |
| nanda  | `a b = c`        | 0..p-1, `=` (id p)                      | p + 1 | p              |

cds is the Critical Data Size paper's whitespace text; power is the 5-token equation of Power
et al. and Grokfast (their ids: `=` is p, the op p + 1); nanda is Nanda et al.'s (2023) 3-token
input, whose `=` is token p and whose unembedding has p outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from grok_cli.errors import check, check_choice
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
FORMATS = ("cds", "power", "nanda")


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def vocabulary(p: int, op: str = "add", fmt: str = "cds") -> list[str]:
    """Token strings by id (see the module docstring)."""
    return tokens(fmt, [str(i) for i in range(p)], OPS[op][0], modulus=p)


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
    check(isinstance(task.train_split, int | float) and 0 < task.train_split < 1,
          "task.train_split", task.train_split, "a fraction strictly between 0 and 1")
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


def check_modulus(p: object) -> None:
    check(isinstance(p, int) and is_prime(p) and p >= 3, "task.p", p, "a prime number >= 3")


def build_modadd(cfg: DictConfig, device: torch.device) -> TaskData:
    task = cfg.task
    check_modulus(task.p)
    check_choice("task.op", task.op, OPS)
    fmt, nonzero_b = task.get("format", "cds"), task.get("nonzero_b", False)
    check_choice("task.format", fmt, FORMATS)
    check(isinstance(nonzero_b, bool), "task.nonzero_b", nonzero_b,
          "true (b in 1..p-1) or false (b in 0..p-1)")
    seqs = equations(task.p, task.op, fmt, nonzero_b)
    vocab_size = len(vocabulary(task.p, task.op, fmt))
    return equation_task(cfg, seqs, vocab_size, answer_classes(fmt, task.p, vocab_size), device)
