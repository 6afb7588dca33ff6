"""Power et al.'s operations, the three formats and S5, against direct computations."""

from __future__ import annotations

import itertools

import pytest
import torch

from grok_cli.errors import GrokError
from grok_cli.tasks import build_task
from grok_cli.tasks.modadd import equations, vocabulary
from grok_cli.tasks.s5 import composition_table, permutations

# (op, a, b, c) worked by hand at p = 7
HAND = [
    ("x2y2", 3, 5, 6),      # 9 + 25 = 34 = 4 * 7 + 6
    ("x2y2", 0, 0, 0),
    ("x2xyy2", 2, 3, 5),    # 4 + 6 + 9 = 19 = 2 * 7 + 5
    ("x2xyy2", 6, 6, 3),    # 36 + 36 + 36 = 108 = 15 * 7 + 3
    ("x3xy", 2, 5, 4),      # 8 + 10 = 18 = 2 * 7 + 4
    ("x3xy", 4, 0, 1),      # 64 = 9 * 7 + 1
    ("x3xy2y", 1, 2, 0),    # 1 + 4 + 2 = 7
    ("x3xy2y", 3, 4, 2),    # 27 + 48 + 4 = 79 = 11 * 7 + 2
]


def answers(seqs: torch.Tensor) -> dict[tuple[int, int], int]:
    """(a, b) -> c from power-format rows `a op b = c`."""
    return {(a, b): c for a, _, b, _, c in seqs.tolist()}


@pytest.mark.parametrize(("op", "a", "b", "c"), HAND)
def test_power_operations_by_hand(op, a, b, c):
    assert answers(equations(7, op, "power"))[a, b] == c


@pytest.mark.parametrize("op", ["x2y2", "x2xyy2", "x3xy", "x3xy2y"])
def test_power_operations_cover_every_pair_with_the_formula(op):
    p = 11
    formula = {"x2y2": lambda a, b: a * a + b * b, "x2xyy2": lambda a, b: a * a + a * b + b * b,
               "x3xy": lambda a, b: a**3 + a * b, "x3xy2y": lambda a, b: a**3 + a * b * b + b}[op]
    table = answers(equations(p, op, "power"))
    assert table == {(a, b): formula(a, b) % p for a in range(p) for b in range(p)}


def test_formats_spell_the_papers_sequences():
    p = 5
    cds, power, nanda = (equations(p, "sub", fmt) for fmt in ("cds", "power", "nanda"))
    assert len(cds) == len(power) == len(nanda) == 25
    words = lambda fmt, row: [vocabulary(p, "sub", fmt)[i] for i in row]  # noqa: E731
    # row 7 is a = 1, b = 2 (a-major order); 1 - 2 = 4 mod 5. cds ids: the op p + 1, % p + 3,
    # the modulus p, = p + 2
    assert cds[7].tolist() == [1, 6, 2, 8, 5, 7, 4]
    assert words("cds", cds[7].tolist()) == ["1", "-", "2", "%", "5", "=", "4"]
    assert words("power", power[7].tolist()) == ["1", "-", "2", "=", "4"]
    assert words("nanda", nanda[7].tolist()) == ["1", "2", "=", "4"]
    # Grokfast's ids: `=` is p, the op p + 1; Nanda's `=` is p.
    assert power[7].tolist() == [1, 6, 2, 5, 4] and nanda[7].tolist() == [1, 2, 5, 4]


@pytest.mark.parametrize(("fmt", "vocab", "classes", "length"),
                         [("cds", 27, 27, 6), ("power", 25, 23, 4), ("nanda", 24, 23, 3)])
def test_every_format_reads_up_to_equals_and_answers_the_last_token(run_cfg, fmt, vocab,
                                                                     classes, length):
    task = build_task(run_cfg("task.p=23", f"task.format={fmt}", "task.op=mul"))
    assert (task.vocab_size, task.n_classes, task.train.x.shape[1]) == (vocab, classes, length)
    eq = {"cds": 25, "power": 23, "nanda": 23}[fmt]  # p + 2 after the modulus and op; else p
    assert (task.train.x[:, -1] == eq).all()  # the model reads the `=` position
    a, b = task.test.x[:, 0], task.test.x[:, -2 if fmt == "nanda" else 2]
    assert torch.equal(task.test.y, a * b % 23)


def test_grokfast_pairs_leave_out_b_zero_and_split_in_half(run_cfg):
    task = build_task(run_cfg("experiment=grokfast_mul97"))
    assert (len(task.train), len(task.test)) == (4656, 4656)  # 97 * 96 = 9,312 equations
    b = torch.cat([task.train.x[:, 2], task.test.x[:, 2]])
    assert b.min() == 1 and len(set(b.tolist())) == 96


def test_s5_table_is_permutation_composition():
    perms = list(itertools.permutations(range(5)))
    table = composition_table(permutations())
    assert table.shape == (120, 120)
    for i, a in enumerate(perms):
        for j, b in enumerate(perms):
            # openai/grok's c = b[a]: c(k) = b(a(k)), apply a, then b
            assert perms[table[i, j]] == tuple(b[a[k]] for k in range(5))
    assert not torch.equal(table, table.T)  # not abelian
    identity = perms.index((0, 1, 2, 3, 4))
    assert torch.equal(table[identity], torch.arange(120))


def test_s5_task_rows_and_formats(run_cfg):
    task = build_task(run_cfg("task=s5"))
    assert (len(task.train), len(task.test)) == (7200, 7200)
    assert (task.vocab_size, task.n_classes, task.train.x.shape[1]) == (122, 120, 4)
    perms = list(itertools.permutations(range(5)))
    index = {perm: i for i, perm in enumerate(perms)}
    # apply a, then b (openai/grok's c = b[a])
    expected = [index[tuple(perms[b][perms[a][k]] for k in range(5))]
                for a, b in task.train.x[:, [0, 2]].tolist()]
    assert task.train.y.tolist() == expected
    nanda = build_task(run_cfg("task=s5", "task.format=nanda"))
    assert (nanda.vocab_size, nanda.train.x.shape[1]) == (121, 3)
    with pytest.raises(GrokError, match="task.format='cds' is not allowed: one of power, nanda"):
        build_task(run_cfg("task=s5", "task.format=cds"))
