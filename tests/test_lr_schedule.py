"""The learning-rate schedule: linear warmup, then a cosine from lr to min_lr by decay_steps."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from conftest import TINY

from grok_cli.training.optim import build_optimizer
from grok_cli.training.run import run_experiment

TINY_RUN = [t for t in TINY if not t.startswith("progress")]


def lrs(cfg, steps: list[int]) -> dict[int, float]:
    """The lr the optimizer uses for its update at each (0-based) step in `steps`."""
    optimizer, schedule = build_optimizer(cfg.optimizer, 0.0, torch.nn.Linear(2, 2))
    seen = {}
    for step in range(max(steps) + 1):
        if step in steps:
            seen[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
    return seen


def test_warmup_then_cosine_to_min_lr_then_constant(run_cfg):
    cfg = run_cfg("optimizer=adamw", "optimizer.lr=1e-3", "optimizer.warmup_steps=10",
                  "optimizer.decay_steps=110", "optimizer.min_lr=1e-4")
    seen = lrs(cfg, [0, 4, 9, 10, 35, 60, 110, 111, 500])
    expected = {0: 1e-4, 4: 5e-4, 9: 1e-3, 10: 1e-3,  # warmup: (step + 1) / 10 of lr
                35: 1e-4 + 9e-4 * (2 + math.sqrt(2)) / 4,  # a quarter of the way: cos = √2/2
                60: 5.5e-4,  # halfway: (lr + min_lr) / 2
                110: 1e-4, 111: 1e-4, 500: 1e-4}  # min_lr from decay_steps on
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)


def test_without_decay_steps_lr_stays_constant_after_warmup(run_cfg):
    cfg = run_cfg("optimizer=adamw", "optimizer.lr=1e-3", "optimizer.warmup_steps=4",
                  "optimizer.min_lr=1e-4")
    assert lrs(cfg, [0, 3, 4, 1000]) == pytest.approx({0: 2.5e-4, 3: 1e-3, 4: 1e-3, 1000: 1e-3})


def test_a_decaying_run_logs_its_lr_and_continues_past_decay_steps_at_min_lr(run_cfg, tmp_path):
    """Each metrics row's lr is the next update's; raising `steps` continues at min_lr, with
    the rows an uninterrupted run writes."""
    decay = [*TINY_RUN, "optimizer.lr=1e-3", "optimizer.decay_steps=20", "optimizer.min_lr=2e-4"]
    run_experiment(run_cfg(*decay), tmp_path / "full")
    run_experiment(run_cfg(*decay, "steps=20"), tmp_path / "part")
    run_experiment(run_cfg(*decay), tmp_path / "part")
    full, part = (list(csv.DictReader(open(tmp_path / d / "metrics.csv")))
                  for d in ("full", "part"))
    assert [float(row["lr"]) for row in full] == pytest.approx(
        [1e-3, 6e-4, 2e-4, 2e-4, 2e-4], rel=1e-12, abs=0)  # steps 0, 10 (midpoint), 20, 30, 40
    drop = ("elapsed_s",)
    assert ([{k: v for k, v in row.items() if k not in drop} for row in part]
            == [{k: v for k, v in row.items() if k not in drop} for row in full])


def test_warmup_from_zero_is_grokfasts_lambda(run_cfg):
    """Grokfast's main.py: LambdaLR(lambda update: 1 if update > 10 else update / 10), so the
    first update has lr 0; the default keeps (step + 1) / warmup_steps."""
    theirs = run_cfg("experiment=grokfast_mul97")
    assert theirs.optimizer.warmup_from_zero is True
    seen = lrs(theirs, [0, 1, 5, 9, 10, 11, 100])
    expected = {0: 0.0, 1: 1e-4, 5: 5e-4, 9: 9e-4, 10: 1e-3, 11: 1e-3, 100: 1e-3}
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)
    factors = [0.0 if s == 0 else seen[s] / 1e-3 for s in (0, 5, 10)]
    assert factors == pytest.approx([0.0, 0.5, 1.0], rel=1e-12, abs=0)
    today = lrs(run_cfg("experiment=grokfast_mul97", "optimizer.warmup_from_zero=false"),
                [0, 5, 9, 10])
    assert today == pytest.approx({0: 1e-4, 5: 6e-4, 9: 1e-3, 10: 1e-3}, rel=1e-12, abs=0)
    assert run_cfg().optimizer.warmup_from_zero is False  # every other run: unchanged
