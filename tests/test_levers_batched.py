"""Levers with K > 1 members: each one says itself whether it works batched (levers.py)."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TINY
from test_batched import MEMBERS, assert_members_equal_their_runs_in_float64

from grok_cli.errors import GrokError
from grok_cli.training.batched import check_batchable, train_batched


@pytest.mark.parametrize("lever", [["loss=mse"], ["loss=stablemax"], ["grokfast=ema"],
                                   ["grokfast=ma", "grokfast.window_size=5"]])
def test_batched_members_equal_their_unbatched_runs_with_a_lever(run_cfg, tmp_path, lever):
    """The loss per member and Grokfast's filters (elementwise on the stacked gradients) are
    exact for K > 1: in float64 each member equals its own run, as without a lever."""
    cfgs = [run_cfg(*TINY, "steps=30", *lever, *member) for member in MEMBERS[1:]]
    assert_members_equal_their_runs_in_float64(
        cfgs, tmp_path, ("train_loss", "test_loss", "l2_norm", "train_acc", "test_acc"))


def test_a_batched_grokfast_checkpoint_resumes_unbatched_exactly(run_cfg, tmp_path):
    """A member's checkpoint holds its own slice of the filter's memory."""
    short = [run_cfg(*TINY, "steps=20", "grokfast=ema", *m) for m in MEMBERS[:2]]
    train_batched(short, [tmp_path / "a", tmp_path / "b"])
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    model = state["model"]
    assert {name: t.shape for name, t in state["grokfast"].items()} == {
        name: model[name].shape for name in state["grokfast"]}


@pytest.mark.parametrize("overrides, message", [
    (["stop.test_acc=0.9"], "stop.test_acc=0.9 is not allowed: null with launcher=batched"),
    (["optimizer.orthogonal=true"], "optimizer.orthogonal=true is not allowed: false with "
                                    "launcher=batched"),
])
def test_a_lever_that_cannot_batch_says_so(run_cfg, overrides, message):
    with pytest.raises(GrokError, match=re.escape(message)):
        check_batchable([run_cfg(*TINY, *overrides)])
