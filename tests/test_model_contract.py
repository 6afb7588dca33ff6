"""Every shipped model keeps the contract of models/base.py: its named read-out points have
the documented shapes, and capturing one changes nothing the model computes."""

from __future__ import annotations

import pytest
import torch

from grok_cli.models import build_model
from grok_cli.models.base import GrokModel
from grok_cli.tasks import build_task

SMALL = {
    "gpt": ["model.hidden_size=16", "model.num_heads=2", "model.num_layers=2"],
    "gpt2": ["model.hidden_size=16", "model.num_heads=2"],
    "nanda": ["model.hidden_size=16", "model.num_heads=2", "model.mlp_size=24"],
    "bert": ["model.hidden_size=16", "model.num_heads=2"],
    "olmoe": ["model.hidden_size=16", "model.num_heads=2", "model.intermediate_size=8",
              "model.num_experts=2", "model.num_experts_per_tok=1"],
    "mlp": ["model.embed_dim=8", "model.hidden_size=16"],
    "lstm": ["model.embed_dim=8", "model.hidden_size=16"],
    "onehot_mlp": ["model.hidden_sizes=[16]"],
}


@pytest.mark.parametrize("name", list(SMALL))
def test_points_have_the_documented_shapes(run_cfg, name):
    cfg = run_cfg(f"model={name}", *SMALL[name], "task.p=11", "task.train_split=0.5")
    task = build_task(cfg)
    model = build_model(cfg.model, task).eval()
    assert isinstance(model, GrokModel) and not model.noisy
    assert model.auxiliary_loss() == 0.0 and model.weight("unembed").shape[1] == task.n_classes
    if "embed" in model.weights():
        assert model.weight("embed").shape[0] == task.vocab_size
    x = task.test.x[:5]
    with torch.no_grad():
        plain = model(x)
        for point in model.activations():
            with model.capture(point) as seen:
                assert torch.equal(model(x), plain)
            assert len(seen) == 1 and seen[0].shape[0] == 5, point
    if name in ("gpt", "gpt2", "nanda", "bert"):
        assert {"embed", "unembed", "blocks.0.mlp.in", "blocks.0.mlp.hidden",
                "blocks.0.mlp.out"} <= set(model.points())


def test_a_missing_point_is_one_line(run_cfg):
    cfg = run_cfg("model=mlp", "model.embed_dim=8", "model.hidden_size=16", "task.p=11")
    model = build_model(cfg.model, build_task(cfg))
    with pytest.raises(Exception, match="has no read-out point 'blocks.0.mlp.hidden' "
                                        r"\(it has: embed, unembed\)"):
        with model.capture("blocks.0.mlp.hidden"):
            pass


def test_dropout_makes_a_model_noisy(run_cfg):
    cfg = run_cfg("model=olmoe", *SMALL["olmoe"], "model.dropout=0.1", "task.p=11")
    assert build_model(cfg.model, build_task(cfg)).noisy  # a config float, no nn.Dropout


def test_a_name_that_is_not_its_code_is_one_line(run_cfg):
    from grok_cli.config import validate_run_config
    from grok_cli.errors import GrokError

    with pytest.raises(GrokError, match=r"model.name='gpt2' is not allowed: the name of "
                                        r"grok_cli.models.gpt.build_gpt \(model._target_\)"):
        validate_run_config(run_cfg("model.name=gpt2"))  # model=gpt's code under gpt2's name
    with pytest.raises(GrokError, match="model.name='mine' is not allowed: one of bert, gpt, "):
        validate_run_config(run_cfg("model.name=mine"))
    with pytest.raises(GrokError, match="model._target_='no.such.build' is not allowed"):
        validate_run_config(run_cfg("model._target_=no.such.build", "model.name=mine"))


def test_a_record_from_before_targets_builds_by_its_name(run_cfg):
    from omegaconf import open_dict

    cfg = run_cfg("model=nanda", *SMALL["nanda"], "task.p=11", "task.format=nanda")
    with open_dict(cfg):
        del cfg.model["_target_"], cfg.task["_target_"]
    model = build_model(cfg.model, build_task(cfg))
    assert type(model).__name__ == "NandaTransformer"
