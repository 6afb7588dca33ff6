"""`grok pathways` and `grok fourier` give today's numbers on small cases, whatever their thread
count or batch size: outputs compared with those captured from the code before the speed work
(tests/analysis_cases.py, tests/data/analyses_before.json)."""

from __future__ import annotations

import json
import math

import pytest
from analysis_cases import BEFORE, capture
from conftest import grok_here

# Floats as written in the csv files. A forward pass of another batch shape (moe.batch_size
# follows the model's size now: 512 samples where it was 8) rounds the model's float32 sums
# differently: losses and router probabilities move in their last float32 bits (at most 1.5e-7
# of a loss, 8e-7 of a consistency; 5e-6 of a complexity, a difference of near-equal
# numbers), nothing more. Pathways, D_path, memorization steps and every string or count are
# compared exactly.
REL, ABS = 1e-5, 1e-7
EXACT = ("pathway", "d_path", "n_", "memorized", "train_acc", "test_acc", "step", "key_freq")


def same(now, before, where: str = "") -> None:
    if isinstance(before, dict):
        assert sorted(now) == sorted(before), where
        for key in before:
            same(now[key], before[key], f"{where}.{key}")
    elif isinstance(before, list):
        assert len(now) == len(before), where
        for i, (a, b) in enumerate(zip(now, before, strict=True)):
            same(a, b, where if isinstance(b, str | int | float) else f"{where}[{i}]")
    elif where.rsplit(".", 1)[-1].startswith(EXACT):
        assert now == before, f"{where}: {now} != {before}"
    elif isinstance(before, float) or _is_float(before) and "." in str(before):
        a, b = float(now), float(before)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=REL, abs=ABS), \
            f"{where}: {now} != {before}"
    else:
        assert now == before, where


def _is_float(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def outputs():
    return capture(grok_here)


@pytest.mark.parametrize("case", ["pathways_defaults", "pathways_sampled", "fourier_found",
                                  "fourier_given"])
def test_outputs_are_todays(outputs, case):
    same(outputs[case], json.loads(BEFORE.read_text())[case], case)
