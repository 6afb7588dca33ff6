"""task=modmix: several operations mod p as data groups, against direct computations."""

from __future__ import annotations

import re

import pytest

from grok_cli.errors import GrokError
from grok_cli.tasks import build_task
from grok_cli.tasks.modadd import OPS
from grok_cli.tasks.modmix import vocabulary

FORMULAS = {"add": lambda a, b, p: (a + b) % p, "sub": lambda a, b, p: (a - b) % p,
            "mul": lambda a, b, p: a * b % p, "x2y2": lambda a, b, p: (a * a + b * b) % p}


def test_groups_share_one_vocabulary_and_split_by_their_own_fraction(run_cfg):
    cfg = run_cfg("task=modmix", "task.p=11", "task.groups.add.fraction=0.5",
                  "task.groups.sub.fraction=1.0", "task.groups.mul.fraction=0.2",
                  "task.groups.x2y2.fraction=0.8")
    task = build_task(cfg)
    names = ["add", "sub", "mul", "x2y2"]
    assert task.group_names == names
    vocab = vocabulary(11, names)
    assert task.vocab_size == len(vocab) == 11 + 1 + 4 and task.n_classes == 11
    # floor(121 x fraction) training pairs per group, the rest in that group's test split.
    assert task.train.group_sizes(4) == [60, 121, 24, 96]
    assert task.test.group_sizes(4) == [61, 0, 97, 25]
    for split in (task.train, task.test):
        for (a, op, b, eq), c, g in zip(split.x.tolist(), split.y.tolist(),
                                        split.group.tolist(), strict=True):
            name = names[g]
            assert (vocab[op], vocab[eq]) == (OPS[name][0], "=")
            assert c == FORMULAS[name](a, b, 11)
    # Every pair of a group is in exactly one of its splits.
    for g in range(4):
        pairs = [tuple(x[[0, 2]].tolist()) for split in (task.train, task.test)
                 for x, h in zip(split.x, split.group, strict=True) if h == g]
        assert sorted(pairs) == [(a, b) for a in range(11) for b in range(11)]


@pytest.mark.parametrize("override, message", [
    ("+task.groups.pow.fraction=0.5", "task.groups='pow' is not allowed: one of add"),
    ("task.groups.mul.fraction=0", "task.groups.mul.fraction=0 is not allowed"),
    ("task.groups.mul.fraction=1.5", "task.groups.mul.fraction=1.5 is not allowed"),
    ("task.groups.mul.fraction=0.001", "task.groups.mul.fraction=0.001 is not allowed"),
])
def test_bad_groups_are_one_error_naming_the_key(run_cfg, override, message):
    with pytest.raises(GrokError, match=re.escape(message)):
        build_task(run_cfg("task=modmix", "task.p=11", override))
