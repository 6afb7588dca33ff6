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
                      "rmsprop": ("RMSprop", 1e-3), "adamw_fast": ("AdamW", 2e-3)}


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


def test_default_run_has_its_own_adamw_and_presets_keep_the_papers(run_cfg):
    """The default's α 3, weight decay 2 and AdamW (lr 2e-3 cosine-decayed to 1e-4 by step
    2,000, betas 0.95/0.95, eps 1e-5) stay out of the presets.

    A preset or a text task that names no optimizer values of its own gets the papers' AdamW
    (lr 1e-3, constant, betas 0.9/0.98 or the text recipe's 0.9/0.999, eps 1e-8) and its own
    α and weight decay.
    """
    def setting(cfg):
        opt = cfg.optimizer
        return (cfg.alpha, cfg.weight_decay, opt.name, opt.lr, list(opt.betas), opt.eps,
                opt.decay_steps, opt.min_lr)

    assert setting(run_cfg()) == (3.0, 2.0, "adamw", 2e-3, [0.95, 0.95], 1e-5, 2000, 1e-4)
    papers = {"experiment=cds_modadd": (1.0, 1.0, [0.9, 0.98]),
              "experiment=explore_optimizers": (1.0, 1.0, [0.9, 0.98]),
              "experiment=cds_imdb": (10.0, 0.01, [0.9, 0.999]),
              "task=imdb": (1.0, 0.01, [0.9, 0.999])}
    for override, (alpha, weight_decay, betas) in papers.items():
        assert setting(run_cfg(override)) == (
            alpha, weight_decay, "adamw", 1e-3, betas, 1e-8, None, 0.0), override


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
