"""The canonical presets hold their sources' settings, run, and resume exactly with Grokfast."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time

import pytest
from conftest import TINY, grok, grok_command, grok_env

from grok_cli.training.run import run_experiment

PRESETS = ["power_div97", "grokfast_mul97", "nanda_p113", "stablemax_add113",
           "orthograd_add113"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_a_step(run_cfg, tmp_path, preset):
    """Each preset's model, loss and optimizer train together (on a smaller p: the same code)."""
    cfg = run_cfg(f"experiment={preset}", "task.p=23", "steps=1", "eval_every=1",
                  "ckpt_every=1", "progress=log")
    assert run_experiment(cfg, tmp_path) == "completed"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"]["step"] == 1 and summary["stopped_early"] is False


def test_power_div97_is_power_et_al(run_cfg):
    cfg = run_cfg("experiment=power_div97")
    assert (cfg.task.op, cfg.task.p, cfg.task.format, cfg.task.train_split) == (
        "div", 97, "power", 0.5)
    assert (cfg.model.name, cfg.model.num_layers, cfg.model.hidden_size,
            cfg.model.num_heads) == ("gpt2", 2, 128, 4)
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas),
            cfg.optimizer.warmup_steps) == ("adamw", 1e-3, [0.9, 0.98], 10)
    assert (cfg.weight_decay, cfg.batch_size) == (1.0, 512)
    # openai/grok: a reshuffle per epoch cut in order, lr step / 10 from step 0, one split
    assert (cfg.sampling.name, cfg.sampling.drop_last, cfg.optimizer.warmup_from_zero,
            cfg.task.split_seed) == ("epoch", False, True, 0)


def test_grokfast_mul97_is_grokfasts_setting_with_either_filter(run_cfg):
    cfg = run_cfg("experiment=grokfast_mul97")
    assert (cfg.task.op, cfg.task.p, cfg.task.format, cfg.task.nonzero_b,
            cfg.task.train_split) == ("mul", 97, "power", True, 0.5)
    assert (cfg.model.name, cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_heads,
            cfg.model.tie_embeddings) == ("gpt2", 2, 128, 4, False)
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas),
            cfg.optimizer.warmup_steps) == ("adam", 1e-3, [0.9, 0.98], 10)
    assert (cfg.weight_decay, cfg.batch_size, cfg.grokfast.name) == (0.0, 512, "none")
    ma = run_cfg("experiment=grokfast_mul97", "grokfast=ma", "weight_decay=0.01")
    assert (ma.grokfast.window_size, ma.grokfast.lamb, ma.grokfast.warmup,
            ma.weight_decay) == (100, 5.0, True, 0.01)
    ema = run_cfg("experiment=grokfast_mul97", "grokfast=ema", "weight_decay=0.005")
    assert (ema.grokfast.alpha, ema.grokfast.lamb, ema.weight_decay) == (0.98, 2.0, 0.005)
    # their main.py's protocol: one generator for init, split and per-epoch batches
    assert (cfg.sampling.name, cfg.sampling.drop_last, cfg.sampling.generator,
            cfg.task.split_seed, cfg.model.init, cfg.model.max_positions,
            cfg.optimizer.warmup_from_zero, cfg.eval_every, cfg.train_metrics) == (
        "epoch", False, "global", "global", "grokfast", 5, True, 10, "epoch")


def test_nanda_p113_is_nanda_et_al(run_cfg):
    cfg = run_cfg("experiment=nanda_p113")
    assert (cfg.task.op, cfg.task.p, cfg.task.format, cfg.task.train_split) == (
        "add", 113, "nanda", 0.3)
    assert (cfg.model.name, cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_heads,
            cfg.model.mlp_size) == ("nanda", 1, 128, 4, 512)
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == (
        "adamw", 1e-3, [0.9, 0.98])
    assert (cfg.weight_decay, cfg.batch_size) == (1.0, None)
    # their LambdaLR(lambda step: min(step / 10, 1)): the first update has lr 0
    assert (cfg.optimizer.warmup_steps, cfg.optimizer.warmup_from_zero) == (10, True)


def test_stablemax_presets_are_prieto_et_al(run_cfg):
    cfg = run_cfg("experiment=stablemax_add113")
    assert (cfg.task.op, cfg.task.p, cfg.task.train_split) == ("add", 113, 0.4)
    assert (cfg.model.name, list(cfg.model.hidden_sizes), cfg.model.bias) == (
        "onehot_mlp", [200, 200], False)
    assert (cfg.loss.name, cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas),
            cfg.optimizer.eps, cfg.optimizer.orthogonal) == (
        "stablemax", "adamw", 0.01, [0.9, 0.999], 1e-25, False)
    assert (cfg.weight_decay, cfg.batch_size, cfg.steps) == (0.0, None, 80000)
    ortho = run_cfg("experiment=orthograd_add113")
    assert (ortho.loss.name, ortho.optimizer.orthogonal, list(ortho.optimizer.betas),
            ortho.optimizer.lr, ortho.weight_decay, ortho.steps) == (
        "cross_entropy", True, [0.9, 0.99], 0.01, 0.0, 300)
    assert ortho.model == cfg.model and ortho.task == cfg.task


def rows_but_time(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_killed_grokfast_run_resumes_to_the_same_numbers(tmp_path):
    """The EMA's memory is in the checkpoint: SIGKILL after step 50, resume from step 30."""
    args = [*TINY, "steps=120", "ckpt_every=30", "batch_size=64", "grokfast=ema"]
    grok("run", *args, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path, check=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(grok_command("run", *args, f"hydra.run.dir={killed}"), cwd=tmp_path,
                            env=grok_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(2400):  # up to 2 minutes
        done = (killed / "metrics.csv").exists() and rows_but_time(killed / "metrics.csv")
        if done and int(done[-1]["step"]) >= 50:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()  # killed mid-run
    grok("run", *args, f"hydra.run.dir={killed}", cwd=tmp_path, check=True)
    assert rows_but_time(killed / "metrics.csv") == rows_but_time(
        tmp_path / "straight" / "metrics.csv")
