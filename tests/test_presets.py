"""Every preset and config group composes, and the paper presets hold the paper's values."""

from __future__ import annotations

import pytest

from grok_cli.cli import conf_dir

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
OPTIMIZERS = sorted(p.stem for p in (conf_dir() / "optimizer").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(run_cfg, experiment):
    from grok_cli.config import validate_run_config

    validate_run_config(run_cfg(f"experiment={experiment}"))


# torch's class and the learning rate each conf/optimizer file gives
OPTIMIZER_CLASS_LR = {"adam": ("Adam", 1e-3), "adamw": ("AdamW", 1e-3), "sgd": ("SGD", 1e-2),
                      "rmsprop": ("RMSprop", 1e-3)}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_builds(run_cfg, optimizer):
    from grok_cli.models import build_model
    from grok_cli.tasks import build_task
    from grok_cli.training.optim import build_optimizer

    assert set(OPTIMIZERS) == set(OPTIMIZER_CLASS_LR)
    cfg = run_cfg(f"optimizer={optimizer}", "task.p=5", "model.hidden_size=8",
                  "model.num_heads=2")
    opt, _ = build_optimizer(cfg.optimizer, cfg.weight_decay,
                             build_model(cfg.model, build_task(cfg)))
    assert (type(opt).__name__, opt.defaults["lr"]) == OPTIMIZER_CLASS_LR[optimizer]


def test_cds_modadd_is_the_papers_recipe(run_cfg):
    cfg = run_cfg("experiment=cds_modadd")
    assert (cfg.task.p, cfg.task.op, cfg.task.train_split) == (113, "add", 0.75)
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_heads) == (1, 128, 4)
    assert cfg.model.dropout == 0 and cfg.batch_size is None and cfg.alpha == 1
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == (
        "adamw", 1e-3, [0.9, 0.98])
    assert cfg.weight_decay == 1.0


def test_seed003_p97_uses_half_of_all_pairs(run_cfg):
    cfg = run_cfg("experiment=seed003_p97")
    assert (cfg.task.p, cfg.task.train_split, cfg.data_fraction) == (97, 0.5, 1.0)
