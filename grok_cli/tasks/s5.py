"""`task=s5`: composition in the symmetric group S5 (Power et al. 2022), a non-abelian group.

The 120 permutations of (0, 1, 2, 3, 4) are the elements, numbered in the order of
`itertools.permutations(range(5))` (token id = that index; its text is the permutation's
one-line form, e.g. `10234`). The equation `a ∘ b = c` has c = b[a] as in openai/grok
(c(i) = b(a(i)): apply a, then b), over all 120 × 120 = 14,400 pairs. Formats `power`
(`a ∘ b = c`, the paper's) and `nanda` (`a b = c`); `cds` writes a modulus, which a group
table does not have.
"""

from __future__ import annotations

import itertools

import torch
from omegaconf import DictConfig

from grok_cli.errors import check_choice
from grok_cli.tasks.base import TaskData
from grok_cli.tasks.equations import answer_classes, check_split, equation_task, rows, tokens

SYMBOL = "∘"


def permutations() -> torch.Tensor:
    """The 120 elements of S5 as rows of images, [120, 5], in itertools order."""
    return torch.tensor(list(itertools.permutations(range(5))))


def composition_table(perms: torch.Tensor) -> torch.Tensor:
    """[n, n] table of element ids: entry (a, b) is the id of b[a] (apply a, then b)."""
    # A permutation's id from its images, as a base-5 number: an injective key.
    place = 5 ** torch.arange(4, -1, -1)
    id_of = torch.full((5**5,), -1, dtype=torch.long)
    id_of[(perms * place).sum(1)] = torch.arange(len(perms))
    composed = perms[:, None, :].expand(-1, len(perms), -1)  # [a, b, i] = a[i]
    images = torch.gather(perms[None].expand(len(perms), -1, -1), 2, composed)  # b[a[i]]
    return id_of[(images * place).sum(-1)]


def check_config(task: DictConfig) -> None:
    check_choice("task.format", task.format, ("power", "nanda"))
    check_split(task)


def build_s5(cfg: DictConfig, device: torch.device) -> TaskData:
    fmt = cfg.task.format
    perms = permutations()
    names = ["".join(map(str, p)) for p in perms.tolist()]
    a, b = torch.cartesian_prod(torch.arange(len(perms)), torch.arange(len(perms))).T
    seqs = rows(fmt, len(names), a, b, composition_table(perms)[a, b])
    vocab_size = len(tokens(fmt, names, SYMBOL))
    return equation_task(cfg, seqs, vocab_size, answer_classes(fmt, len(names), vocab_size),
                         device)
