"""The modular arithmetic task, pruning, and the α rescale, against direct computations."""

from __future__ import annotations

import pytest
import torch

from grok_cli.models import build_model, l2_norm, rescale
from grok_cli.tasks import build_task
from grok_cli.tasks.modadd import equations, vocabulary


def test_paper_format_and_vocabulary(run_cfg):
    cfg = run_cfg("experiment=cds_modadd")
    task = build_task(cfg)
    vocab = vocabulary(113)
    assert len(vocab) == task.vocab_size == 117
    assert (len(task.train), len(task.test)) == (9576, 3193)  # the paper's 75/25 split
    x, y = task.train.x[0], task.train.y[0]
    text = " ".join(vocab[i] for i in [*x.tolist(), int(y)])
    a, plus, b, mod, p, eq, c = text.split()
    assert (plus, mod, p, eq) == ("+", "%", "113", "=")
    assert int(c) == (int(a) + int(b)) % 113


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_every_equation_is_right(op):
    p = 7
    seqs = equations(p, op)
    assert len(seqs) == (p * (p - 1) if op == "div" else p * p)
    for a, _, b, _, modulus, _, c in seqs.tolist():
        assert modulus == p
        if op == "add":
            assert c == (a + b) % p
        elif op == "sub":
            assert c == (a - b) % p
        elif op == "mul":
            assert c == (a * b) % p
        else:
            assert b != 0 and (c * b) % p == a


def test_split_is_deterministic_and_independent_of_fraction_and_seed(run_cfg):
    base = build_task(run_cfg("task.p=23"))
    again = build_task(run_cfg("task.p=23", "seed=5", "data_fraction=0.3"))
    assert torch.equal(base.test.x, again.test.x)
    other = build_task(run_cfg("task.p=23", "task.split_seed=1"))
    assert not torch.equal(base.test.x, other.test.x)


def test_fraction_sizes_are_uniform_nested_subsets(run_cfg):
    p23 = ("task.p=23", "task.train_split=0.75")
    full = build_task(run_cfg(*p23, "data_fraction=1.0")).train
    small = build_task(run_cfg(*p23, "data_fraction=0.3")).train
    large = build_task(run_cfg(*p23, "data_fraction=0.6")).train
    assert len(full) == 396  # floor(0.75 * 23 * 23)
    assert (len(small), len(large)) == (round(0.3 * 396), round(0.6 * 396))
    rows = lambda split: {tuple(r) for r in split.x.tolist()}  # noqa: E731
    assert rows(small) < rows(large) < rows(full)
    sized = build_task(run_cfg(*p23, "train_size=100", "data_fraction=0.3")).train
    assert len(sized) == 100  # train_size overrides data_fraction
    reseeded = build_task(run_cfg(*p23, "data_fraction=0.3", "seed=1")).train
    assert rows(reseeded) != rows(small)


@pytest.mark.parametrize("alpha", [0.5, 10.0])
def test_rescale_multiplies_the_l2_norm_by_alpha(run_cfg, alpha):
    cfg = run_cfg("task.p=23", "model.hidden_size=32")
    model = build_model(cfg.model, build_task(cfg))
    before = torch.sqrt(sum((p.double() ** 2).sum() for p in model.parameters()))
    rescale(model, alpha)
    after = torch.sqrt(sum((p.double() ** 2).sum() for p in model.parameters()))
    assert after.item() == pytest.approx(alpha * before.item(), rel=1e-5)
    assert l2_norm(model).item() == pytest.approx(after.item(), rel=1e-5)

