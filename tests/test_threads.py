"""`threads=`: how many intra-op CPU threads a run uses, and that it never changes a run's
identity (a checkpoint continues under another thread count)."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import TINY
from hydra import compose, initialize_config_dir

from grok_cli.config import conf_dir
from grok_cli.models import build_model
from grok_cli.tasks import build_task
from grok_cli.training import threads as threads_module
from grok_cli.training.run import run_experiment
from grok_cli.training.threads import SMALL_MODEL_PARAMETERS, resolve_threads

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SMALL, LARGE = 54_272, 4_000_000  # the default GPT (counted below); the text recipe's BERT


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(threads_module, "cores", lambda: 8)


def sweep_hydra(*overrides: str):
    """The hydra node a job of `grok sweep <overrides>` sees (its launcher settings)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(config_name="sweep", overrides=list(overrides),
                       return_hydra_config=True).hydra


def test_the_default_model_is_small_and_bert_is_not(run_cfg):
    cfg = run_cfg()
    d, positions = cfg.model.hidden_size, cfg.model.max_positions  # 64, 16
    vocab = cfg.task.p + 4  # format cds: the p residues, the modulus, +, = and %: 51
    # one block: q, k, v and output projections 4d^2 + 4d; MLP d -> 4d -> d 8d^2 + 5d; two
    # layer norms 4d. The output layer shares the token embedding.
    block = 12 * d * d + 13 * d
    assert vocab * d + positions * d + block * cfg.model.num_layers == SMALL
    model = build_model(cfg.model, build_task(cfg))
    assert sum(p.numel() for p in model.parameters()) == SMALL
    assert SMALL < SMALL_MODEL_PARAMETERS < 30_522 * 128  # BERT's word embedding alone


@pytest.mark.parametrize(("value", "device", "parameters", "environ", "expected"), [
    (3, CPU, SMALL, {"OMP_NUM_THREADS": "1"}, 3),   # an explicit number wins over everything
    (1, CUDA, LARGE, {}, 1),
    ("auto", CPU, SMALL, {}, 1),                    # a small model on a CPU: one thread
    ("auto", CPU, LARGE, {}, 8),                    # a large one: every core
    ("auto", CUDA, SMALL, {}, 8),                   # on a GPU the CPU only feeds it
    ("auto", CPU, SMALL, {"OMP_NUM_THREADS": "4"}, 4),  # the environment's choice is kept
    ("auto", CPU, LARGE, {"OMP_NUM_THREADS": "2"}, 2),
    ("auto", CPU, LARGE, {"OMP_NUM_THREADS": ""}, 8),   # set but empty: not a choice
])
def test_resolved_thread_count(eight_cores, value, device, parameters, environ, expected):
    assert resolve_threads(value, device, parameters, None, environ) == expected


@pytest.mark.parametrize(("n_jobs", "expected"), [(2, 4), (3, 2), (16, 1), (-1, 1), (-3, 1),
                                                  (-5, 2)])
def test_auto_shares_the_cores_among_parallel_jobs(eight_cores, n_jobs, expected):
    """launcher=local: cores ÷ jobs (joblib's n_jobs; -1 = 8 jobs, -5 = 8 + 1 - 5 = 4 jobs)."""
    hydra = sweep_hydra("launcher=local", f"hydra.launcher.n_jobs={n_jobs}")
    assert resolve_threads("auto", CPU, LARGE, hydra, {}) == expected


def test_other_launchers_run_one_job_at_a_time(eight_cores):
    assert resolve_threads("auto", CPU, LARGE, sweep_hydra("launcher=local"), {}) == 4  # 2 jobs
    assert resolve_threads("auto", CPU, LARGE, sweep_hydra("launcher=basic"), {}) == 8


def test_a_checkpoint_continues_under_another_thread_count(run_cfg, tmp_path, caplog):
    run = tmp_path / "run"
    assert run_experiment(run_cfg(*TINY, "steps=20", "threads=1"), run) == "completed"
    assert torch.get_num_threads() == 1
    with caplog.at_level(logging.INFO, logger="grok"):
        assert run_experiment(run_cfg(*TINY, "steps=40", "threads=2"), run) == "completed"
    assert torch.get_num_threads() == 2
    assert "threads: 2 intra-op (threads=2)" in caplog.text  # the run says how many it used
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 40 and "threads" not in state["identity"]
