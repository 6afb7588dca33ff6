"""Every trainer speed-up is exact: the same numbers with and without it."""

from __future__ import annotations

import csv
import logging

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, grok_here

from grok_cli.models import build_model, gpt, rescale
from grok_cli.models.gpt import build_gpt
from grok_cli.tasks import build_task
from grok_cli.training import optim
from grok_cli.training.device import accelerate
from grok_cli.training.run import run_experiment
from grok_cli.training.trainer import train


def logits_and_grads(model, forward, y):
    model.zero_grad(set_to_none=True)
    logits = forward()
    F.cross_entropy(logits, y).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("padded", [False, True])
# Rows: all (the score table), 40 (> vocab 25, but the vocab² × heads score table would
# outgrow 40 × hidden: pair tables, per-sample scores), 8 (< vocab: no tables).
@pytest.mark.parametrize("rows", [None, 40, 8])
def test_fast_decoder_path_equals_the_full_hf_forward(run_cfg, layers, padded, rows):
    cfg = run_cfg("task.p=23", "model.hidden_size=32", "model.num_heads=4",
                  f"model.num_layers={layers}")
    task = build_task(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, task)
    rescale(model, 3.0)  # larger weights: larger scores, a sharper test of the attention
    x, y = task.train.x[:rows], task.train.y[:rows]
    mask = None
    if padded:  # left padding on some rows: the HF additive mask must be applied the same
        mask = torch.ones_like(x)
        mask[::3, :2] = 0
    fast_logits, fast_grads = logits_and_grads(model, lambda: model(x, mask), y)
    # the reference: Hugging Face's own LM head over the whole sequence, read at the `=` (last)
    full_logits, full_grads = logits_and_grads(
        model, lambda: model.lm(input_ids=x, attention_mask=mask).logits[:, -1], y)
    torch.testing.assert_close(fast_logits, full_logits, rtol=1e-5, atol=1e-5)
    assert fast_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], rtol=1e-5, atol=1e-5,
                                   msg=name)


def test_fast_path_keeps_the_hf_state_dict(run_cfg):
    cfg = run_cfg("task.p=23", "model.hidden_size=32", "model.num_heads=2")
    model = build_model(cfg.model, build_task(cfg))
    assert list(model.state_dict()) == [f"lm.{k}" for k in model.lm.state_dict()]


def losses(run_cfg, tmp_path, name, *overrides):
    cfg = run_cfg(*TINY, "steps=30", "eval_every=1", "ckpt_every=1000", *overrides)
    train(cfg, tmp_path / name)
    with open(tmp_path / name / "metrics.csv", newline="") as f:
        return torch.tensor([float(r["train_loss"]) for r in csv.DictReader(f)])


def test_training_losses_agree_without_the_speedups(run_cfg, tmp_path, monkeypatch):
    """Fast decoder path + fused AdamW against the full HF forward + foreach AdamW.

    In float64 the two runs agree to 1e-9 at every step: the speed-ups change no arithmetic
    beyond rounding (in float32 that rounding would grow as the loss falls, hiding a real
    difference of the same size). conftest puts the default dtype back.
    """
    torch.set_default_dtype(torch.float64)
    (tmp_path / "fast").mkdir()
    (tmp_path / "plain").mkdir()
    fast = losses(run_cfg, tmp_path, "fast")

    def full_forward(cfg, task):
        model = build_gpt(cfg, task)
        model.fast = False
        return model

    monkeypatch.setattr(gpt, "build_gpt", full_forward)
    monkeypatch.setattr(optim, "_fusable", lambda params: False)  # foreach AdamW
    plain = losses(run_cfg, tmp_path, "plain")
    assert len(fast) == len(plain) == 31
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-9)


def test_fused_adamw_is_used_on_cpu(run_cfg):
    cfg = run_cfg("task.p=23", "model.hidden_size=32", "model.num_heads=2")
    model = build_model(cfg.model, build_task(cfg))
    optimizer, _ = optim.build_optimizer(cfg.optimizer, cfg.weight_decay, model)
    assert optimizer.defaults["fused"] is True


def test_gpu_switches_are_no_ops_on_cpu(run_cfg):
    cfg = run_cfg("task.p=23", "model.hidden_size=32", "model.num_heads=2",
                  "precision=bf16", "compile=true")
    model = build_model(cfg.model, build_task(cfg))
    forward = model.forward
    accelerate(model, cfg, torch.device("cpu"))
    assert model.forward == forward and "forward" not in vars(model)


def test_a_run_falls_back_cleanly_on_cpu(run_cfg, tmp_path, caplog):
    cfg = run_cfg(*TINY, "steps=10", "device=cpu", "precision=bf16", "compile=true")
    with caplog.at_level(logging.INFO, logger="grok"):
        assert run_experiment(cfg, tmp_path / "run") == "completed"
    assert "precision=bf16 compile=True apply on CUDA only: running fp32, eager" in caplog.text


def test_flush_denormal_zeroes_subnormal_floats_only(run_cfg, tmp_path):
    """float32's smallest normal number is 2^-126 = 1.1755e-38: 1e-39 below it reads as 0 in a
    run with flush_denormal=true, 1e-37 above it is kept; the next run without it keeps both."""
    def survives(value: float) -> bool:
        return bool(torch.tensor([value], dtype=torch.float32).mul(1.0).item() != 0)

    if not torch.set_flush_denormal(True):  # False: this CPU has no flush mode (the run warns)
        pytest.skip("this CPU cannot flush subnormal floats")
    torch.set_flush_denormal(False)
    assert survives(1e-39) and survives(1e-37)
    assert run_experiment(run_cfg(*TINY, "steps=10", "device=cpu", "flush_denormal=true"),
                          tmp_path / "flushed") == "completed"
    assert not survives(1e-39) and survives(1e-37)
    assert run_experiment(run_cfg(*TINY, "steps=10", "device=cpu"),
                          tmp_path / "plain") == "completed"
    assert survives(1e-39)


def test_flush_denormal_on_two_threads_is_refused_and_writes_nothing(tmp_path):
    """Torch's worker threads keep their own mode: half of a 2-thread op would stay subnormal."""
    result = grok_here("run", *TINY, "device=cpu", "threads=2", "flush_denormal=true",
                       f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: flush_denormal=true is not allowed: true with one CPU thread (threads=1; this "
        "run would have 2): the mode is per thread, and torch's worker threads keep theirs"]
    assert not (tmp_path / "run").exists()


def test_fast_path_gradients_do_not_depend_on_thread_scheduling(run_cfg):
    """Two threads, repeated backward passes: bit-identical gradients, so a resumed run on a
    multi-core CPU reproduces an uninterrupted one exactly."""
    cfg = run_cfg()  # the default run: 1 layer, batch larger than the vocab (table path)
    task = build_task(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, task)
    torch.set_num_threads(2)  # conftest puts it back
    grads = []
    for _ in range(3):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(task.train.x), task.train.y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert all(torch.equal(grads[0], g) for g in grads[1:])
