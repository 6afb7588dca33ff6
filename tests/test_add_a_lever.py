"""docs/design.md's recipe "add a lever": one new module plus its config file, nothing else.

The fixture tests/fixtures/lever/ (not shipped) holds exactly those two files: sign_grad.py
(a `Lever` whose after_backward replaces each gradient by its sign) and conf/sign_grad/on.yaml
(its `_target_`). The real CLI finds it through Hydra's search path, for one run (K = 1) and
for a batched sweep (K > 1), with no edit anywhere in grok_cli/ or conf/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import TINY, grok_here, read_rows

FIXTURE = Path(__file__).parent / "fixtures" / "lever"
LEVER = ["+sign_grad=on", f"hydra.searchpath=[file://{FIXTURE / 'conf'}]"]


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURE))
    yield
    sys.modules.pop("sign_grad", None)


def test_a_new_lever_acts_in_a_run(tmp_path):
    short = [*TINY, "steps=20"]
    plain, signed = tmp_path / "plain", tmp_path / "signed"
    grok_here("run", *short, f"hydra.run.dir={plain}", cwd=tmp_path, check=True)
    grok_here("run", *short, *LEVER, f"hydra.run.dir={signed}", cwd=tmp_path, check=True)
    summary = json.loads((signed / "summary.json").read_text())
    assert summary["sign_grad_steps"] == 20  # once per optimizer step
    first, last = (read_rows(d / "metrics.csv") for d in (plain, signed))
    assert first[0]["train_loss"] == last[0]["train_loss"]  # the same init
    assert first[-1]["train_loss"] != last[-1]["train_loss"]  # other steps
    assert "sign_grad" in (signed / ".hydra" / "config.yaml").read_text()


def test_a_new_lever_acts_in_a_batched_sweep(tmp_path):
    """K > 1: the lever declares itself batchable (elementwise), so every member gets it."""
    sweep = tmp_path / "sweep"
    grok_here("sweep", "launcher=batched", *TINY, "steps=20", "seed=0,1", *LEVER,
              f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=True)
    jobs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(jobs) == 2
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert (summary["status"], summary["batched"], summary["sign_grad_steps"]) == (
            "completed", True, 20)
