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

import torch
from omegaconf import DictConfig

from grok_cli.errors import check, check_choice
from grok_cli.tasks.base import TaskData
from grok_cli.tasks.equations import (
    OPS,
    answer_classes,
    check_modulus,
    check_split,
    equation_task,
    equations,
    rows,
    tokens,
)

__all__ = ["OPS", "equations", "rows", "tokens", "vocabulary"]  # used by the analyses too

FORMATS = ("cds", "power", "nanda")


def vocabulary(p: int, op: str = "add", fmt: str = "cds") -> list[str]:
    """Token strings by id (see the module docstring)."""
    return tokens(fmt, [str(i) for i in range(p)], OPS[op][0], modulus=p)


def check_config(task: DictConfig) -> None:
    check_modulus(task.p)
    check_choice("task.op", task.op, OPS)
    fmt, nonzero_b = task.get("format", "cds"), task.get("nonzero_b", False)
    check_choice("task.format", fmt, FORMATS)
    check(isinstance(nonzero_b, bool), "task.nonzero_b", nonzero_b,
          "true (b in 1..p-1) or false (b in 0..p-1)")
    check_split(task)


def title(task: DictConfig) -> str:
    return f"{task.name}: {task.op} mod p = {task.p}"


def build_modadd(cfg: DictConfig, device: torch.device) -> TaskData:
    task = cfg.task
    fmt, nonzero_b = task.get("format", "cds"), task.get("nonzero_b", False)
    seqs = equations(task.p, task.op, fmt, nonzero_b)
    vocab_size = len(vocabulary(task.p, task.op, fmt))
    return equation_task(cfg, seqs, vocab_size, answer_classes(fmt, task.p, vocab_size), device)
