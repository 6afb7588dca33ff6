"""`task=modmix`: several binary operations mod one p in one dataset, each a data group.

The groups are `task.groups`, an operation name of `task=modadd` (add, sub, mul, div, x2y2,
...) each with its own training fraction `task.groups.<op>.fraction` in (0, 1]: that share of
the op's pairs (a, b) is in the training split, the rest in the test split, drawn per group
from one generator seeded by `task.split_seed`. Every group shares one vocabulary and the power
format `a op b = c`: the elements 0..p-1, `=` (id p), then one op token per group (id p + 1 +
the group's position in `task.groups`). The answer c is one of the p elements. Each sample
keeps its group id (Split.group), so the trainer reports accuracy per group and `grok pathways
moe.from_run=` groups the samples by operation. `data_fraction` / `train_size` prune the joint
training split uniformly, as for modadd.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from grok_cli.errors import check, check_choice, is_int, is_number
from grok_cli.tasks.base import TaskData, split_indices
from grok_cli.tasks.equations import OPS, answer_split, check_modulus, equations, split_task


def vocabulary(p: int, ops: list[str]) -> list[str]:
    """Token strings by id: the elements, `=`, one op symbol per group."""
    return [*map(str, range(p)), "=", *(OPS[op][0] for op in ops)]


def group_fraction(groups: DictConfig, op: str) -> float:
    check_choice("task.groups", op, OPS)
    entry = groups[op]
    fraction = entry.get("fraction") if isinstance(entry, DictConfig) else entry
    check(is_number(fraction) and 0 < fraction <= 1, f"task.groups.{op}.fraction", fraction,
          "a training fraction in (0, 1] (the share of the op's pairs in the training split)")
    return float(fraction)


def check_config(task: DictConfig) -> None:
    check_modulus(task.p)
    groups = task.groups
    check(isinstance(groups, DictConfig) and len(groups) > 0, "task.groups", groups,
          "one or more operations, each with its training fraction (task.groups.add.fraction=0.5)")
    for op in groups:
        group_fraction(groups, str(op))
    check(is_int(task.split_seed), "task.split_seed", task.split_seed,
          "an integer (task=modmix draws its splits from a generator of their own)")


def title(task: DictConfig) -> str:
    """Each op with its training fraction."""
    ops = ", ".join(f"{op} {group_fraction(task.groups, op)}" for op in task.groups)
    return f"{task.name}: {ops} mod p = {task.p}"


def build_modmix(cfg: DictConfig, device: torch.device) -> TaskData:
    task, p = cfg.task, cfg.task.p
    groups = task.groups
    ops = [str(op) for op in groups]
    fractions = [group_fraction(groups, op) for op in ops]
    generator = torch.Generator().manual_seed(task.split_seed)
    seqs, group, train, test, offset = [], [], [], [], 0
    for g, (op, fraction) in enumerate(zip(ops, fractions, strict=True)):
        rows = equations(p, op, "power")
        rows[:, 1] = p + 1 + g  # the op's own token in the shared vocabulary
        train_idx, test_idx = split_indices(len(rows), fraction, generator)
        check(len(train_idx) > 0, f"task.groups.{op}.fraction", fraction,
              f"a fraction that keeps at least one of the op's {len(rows)} pairs for training")
        seqs.append(rows)
        group.append(torch.full((len(rows),), g))
        train.append(train_idx + offset)
        test.append(test_idx + offset)
        offset += len(rows)
    check(sum(map(len, test)) > 0, "task.groups", dict(zip(ops, fractions, strict=True)),
          "at least one group with a fraction below 1, so the test split is not empty")
    full = answer_split(torch.cat(seqs), torch.cat(group))
    return split_task(cfg, full, (torch.cat(train), torch.cat(test)), p + 1 + len(ops), p,
                      device, group_names=ops)
