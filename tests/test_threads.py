"""`threads=`: how many intra-op CPU threads a run uses, and that it never changes a run's
identity (a checkpoint continues under another thread count)."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import TINY
from hydra import compose, initialize_config_dir

from grok_cli import threads as threads_module
from grok_cli.config import conf_dir
from grok_cli.models import build_model
from grok_cli.tasks import build_task
from grok_cli.threads import SMALL_MATRIX, cgroup_cpus, largest_matrix, resolve_threads
from grok_cli.training.run import run_experiment

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
SMALL, LARGE = 16_384, 3_906_816  # the default GPT's largest matrix (below); BERT's embedding


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
    d = cfg.model.hidden_size  # 64
    # The largest weight matrix is the MLP's d x 4d (the embedding is 51 x 64).
    model = build_model(cfg.model, build_task(cfg))
    assert largest_matrix(model) == d * 4 * d == SMALL
    assert SMALL < SMALL_MATRIX < 30_522 * 128  # BERT's word embedding alone


def test_a_stack_of_experts_counts_one_expert():
    """An OLMoE keeps its 64 experts in one [64, 2 x 64, 64] tensor: each op is one expert's."""
    from transformers import OlmoeConfig, OlmoeForCausalLM

    model = OlmoeForCausalLM(OlmoeConfig(vocab_size=100, hidden_size=64, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4,
                                         num_key_value_heads=4, num_experts=64))
    assert largest_matrix(model) == 128 * 64  # not 64 x 128 x 64
    assert resolve_threads("auto", CPU, largest_matrix(model), None, {}) == 1


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "150000 100000\n"}, 2),               # cgroup v2: 1.5 cores -> 2
    ({"cpu.max": "max 100000\n"}, None),               # no quota
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_cgroup_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpus(tmp_path) == expected


def test_cores_are_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(threads_module.os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(threads_module, "cgroup_cpus", lambda: 2)
    assert threads_module.cores() == 2
    monkeypatch.setattr(threads_module, "cgroup_cpus", lambda: None)
    assert threads_module.cores() == 4


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
    assert "threads: 2 (threads=2)" in caplog.text  # the run says how many it used
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 40 and "threads" not in state["identity"]
