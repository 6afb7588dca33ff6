"""task=modmix: several operations mod p as data groups, against direct computations."""

from __future__ import annotations

import json
import re

import pytest

from grok_cli.errors import GrokError
from grok_cli.runfolder.metrics import read_metrics
from grok_cli.tasks import build_task
from grok_cli.tasks.modadd import OPS
from grok_cli.tasks.modmix import vocabulary
from grok_cli.training.batched import train_batched
from grok_cli.training.run import run_experiment

FORMULAS = {"add": lambda a, b, p: (a + b) % p, "sub": lambda a, b, p: (a - b) % p,
            "mul": lambda a, b, p: a * b % p, "x2y2": lambda a, b, p: (a * a + b * b) % p}


def test_groups_share_one_vocabulary_and_split_by_their_own_fraction(run_cfg):
    cfg = run_cfg("task=modmix", "task.p=11", "task.groups.add.fraction=0.5",
                  "task.groups.sub.fraction=1.0", "task.groups.mul.fraction=0.2",
                  "task.groups.x2y2.fraction=0.8")
    task = build_task(cfg)
    names = ["add", "sub", "mul", "x2y2"]
    assert task.group_names == names
    vocab = vocabulary(11, names)
    assert task.vocab_size == len(vocab) == 11 + 1 + 4 and task.n_classes == 11
    # floor(121 x fraction) training pairs per group, the rest in that group's test split.
    assert task.train.group_sizes(4) == [60, 121, 24, 96]
    assert task.test.group_sizes(4) == [61, 0, 97, 25]
    for split in (task.train, task.test):
        for (a, op, b, eq), c, g in zip(split.x.tolist(), split.y.tolist(),
                                        split.group.tolist(), strict=True):
            name = names[g]
            assert (vocab[op], vocab[eq]) == (OPS[name][0], "=")
            assert c == FORMULAS[name](a, b, 11)
    # Every pair of a group is in exactly one of its splits.
    for g in range(4):
        pairs = [tuple(x[[0, 2]].tolist()) for split in (task.train, task.test)
                 for x, h in zip(split.x, split.group, strict=True) if h == g]
        assert sorted(pairs) == [(a, b) for a in range(11) for b in range(11)]


@pytest.mark.parametrize("override, message", [
    ("+task.groups.pow.fraction=0.5", "task.groups='pow' is not allowed: one of add"),
    ("task.groups.mul.fraction=0", "task.groups.mul.fraction=0 is not allowed"),
    ("task.groups.mul.fraction=1.5", "task.groups.mul.fraction=1.5 is not allowed"),
    ("task.groups.mul.fraction=0.001", "task.groups.mul.fraction=0.001 is not allowed"),
])
def test_bad_groups_are_one_error_naming_the_key(run_cfg, override, message):
    with pytest.raises(GrokError, match=re.escape(message)):
        build_task(run_cfg("task=modmix", "task.p=11", override))


# ---------------------------------------------------------------- per-group metrics of a run

TINY_MIX = ["task=modmix", "task.p=11", "task.groups.add.fraction=0.6",
            "task.groups.sub.fraction=0.5", "task.groups.mul.fraction=0.4",
            "task.groups.x2y2.fraction=0.3", "model.hidden_size=32", "model.num_heads=2",
            "steps=20", "eval_every=10", "ckpt_every=10", "progress=log",
            "optimizer.lr=0.01", "thresholds.memorize=0.2", "thresholds.generalize=0.1"]
GROUPS = ["add", "sub", "mul", "x2y2"]


def hand_counted(cfg, run_dir):
    """Per group and split: (correct, samples) of the checkpointed model, one sample at a time."""
    import torch

    from grok_cli.models import build_model

    task = build_task(cfg)
    model = build_model(cfg.model, task)
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "last.pt",
                                     weights_only=False)["model"])
    model.eval()
    counts = {}
    for name, split in (("train", task.train), ("test", task.test)):
        for x, y, g in zip(split.x, split.y.tolist(), split.group.tolist(), strict=True):
            right, n = counts.get((name, GROUPS[g]), (0, 0))
            with torch.no_grad():
                guess = int(model(x[None]).argmax(-1))
            counts[(name, GROUPS[g])] = (right + (guess == y), n + 1)
    return counts


@pytest.mark.parametrize("batch_size", ["null", "32"])  # train counts: training forward / eval
def test_per_group_columns_and_steps_match_a_direct_computation(run_cfg, tmp_path, batch_size):
    cfg = run_cfg(*TINY_MIX, f"batch_size={batch_size}")
    run = tmp_path / "run"
    assert run_experiment(cfg, run) == "completed"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[8:] == [*(f"train_acc/{g}" for g in GROUPS), *(f"test_acc/{g}" for g in GROUPS)]
    rows = read_metrics(run / "metrics.csv")
    last = rows[-1]
    for (split, group), (right, n) in hand_counted(cfg, run).items():
        assert last[f"{split}_acc/{group}"] == right / n, (split, group)
    summary = json.loads((run / "summary.json").read_text())
    for group in GROUPS:  # first evaluation at or above the run's thresholds, scanned here
        memorized = [r["step"] for r in rows if r[f"train_acc/{group}"] >= 0.2]
        generalized = [r["step"] for r in rows if r[f"test_acc/{group}"] >= 0.1]
        assert summary["groups"][group] == {
            "memorization_step": memorized[0] if memorized else None,
            "generalization_step": generalized[0] if generalized else None}


def test_a_resumed_run_keeps_its_group_columns(run_cfg, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_experiment(run_cfg(*TINY_MIX), straight) == "completed"
    assert run_experiment(run_cfg(*TINY_MIX, "steps=10"), resumed) == "completed"
    assert run_experiment(run_cfg(*TINY_MIX), resumed) == "completed"
    drop = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    expected = drop(read_metrics(straight / "metrics.csv"))
    assert drop(read_metrics(resumed / "metrics.csv")) == expected
    assert len(expected) == 3 and "test_acc/x2y2" in expected[0]


def test_batched_members_report_the_same_group_accuracies(run_cfg, tmp_path):
    cfgs = [run_cfg(*TINY_MIX, f"seed={k}") for k in range(2)]
    dirs = [tmp_path / f"batched{k}" for k in range(2)]
    assert train_batched(cfgs, dirs) == ["completed"] * 2
    for k, cfg in enumerate(cfgs):
        assert run_experiment(cfg, tmp_path / f"single{k}") == "completed"
        batched, single = (read_metrics(d / "metrics.csv") for d in (dirs[k],
                                                                   tmp_path / f"single{k}"))
        for column in (f"{split}_acc/{g}" for split in ("train", "test") for g in GROUPS):
            assert [r[column] for r in batched] == pytest.approx([r[column] for r in single],
                                                                 abs=1e-6), column


# ---------------------------------------------------------------- grok pathways on a modmix run

MOE = ["model=olmoe", "model.num_layers=2", "model.intermediate_size=32", "model.num_experts=4",
       "model.num_experts_per_tok=2", "save_every=10"]


def test_pathways_from_a_modmix_run_correlates_each_group_with_its_own_accuracy(
        run_cfg, tmp_path, grok_main):
    import numpy as np
    from test_pathways_cli import read_rows

    run, out = tmp_path / "run", tmp_path / "pathways"
    cfg = run_cfg(*TINY_MIX, *MOE)
    assert run_experiment(cfg, run) == "completed"
    args = [f"moe.from_run={run}", "memorization.epsilon=auto", "memorization.delta=10",
            f"hydra.run.dir={out}"]
    assert grok_main(["pathways", *args], tmp_path) == 0
    metrics = {r["step"]: r for r in read_metrics(run / "metrics.csv")}
    rows = read_rows(out / "pathways.csv")
    correlations = {(r["group"], r["metric"]): r for r in read_rows(out / "correlations.csv")}
    sizes = build_task(cfg).train.group_sizes(4)
    final = [r for r in read_rows(out / "pathways_samples.csv") if r["checkpoint"] == "step_20"]
    epsilon = json.loads((out / "pathways.json").read_text())["memorization"]["epsilon"]
    assert set(epsilon) == set(GROUPS)
    for group, size in zip(GROUPS, sizes, strict=True):
        own = [r for r in rows if r["group"] == group]
        assert [r["checkpoint"] for r in own] == ["step_0", "step_10", "step_20"]
        assert {int(r["n_samples"]) for r in own} == {size}
        accuracy = [metrics[int(r["checkpoint"][5:])][f"test_acc/{group}"] for r in own]
        assert [float(r["accuracy"]) for r in own] == accuracy  # the group's own, not test_acc
        d_path = [float(r["d_path_mean"]) for r in own]
        expected = np.corrcoef(d_path, accuracy)[0, 1] if np.ptp(d_path) and np.ptp(
            accuracy) else float("nan")
        got = float(correlations[(group, "d_path")]["pearson"])
        assert got == pytest.approx(expected, nan_ok=True, abs=1e-12), group
        # epsilon=auto: 20-25% of the group's samples at or under it at the last checkpoint
        losses = [float(r["loss"]) for r in final if r["group"] == group]
        assert len(losses) == size
        assert 0.20 <= sum(v <= epsilon[group] for v in losses) / size <= 0.25, group
    overall = [r for r in rows if r["group"] == "all"]
    assert [float(r["accuracy"]) for r in overall] == [metrics[s]["test_acc"] for s in (0, 10, 20)]


# ---------------------------------------------------------------- the testbed and its aux loss


def test_router_aux_loss_is_olmoes_and_trains_without_changing_the_logged_loss(run_cfg, tmp_path):
    import torch

    from grok_cli.models import build_model

    cfg = run_cfg(*TINY_MIX, *MOE, "model.router_aux_loss_coef=0.01")
    task = build_task(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, task).train()
    model(task.train.x)
    hf = model.lm(input_ids=task.train.x, output_router_logits=True).aux_loss  # HF's own
    assert model.auxiliary_loss().item() == pytest.approx(0.01 * hf.item(), rel=1e-6)
    assert model.auxiliary_loss() == 0.0  # taken once: an eval pass never adds a stale one
    weights = {}
    for coef in (0.0, 0.01):
        run = tmp_path / f"coef{coef}"
        assert run_experiment(run_cfg(*TINY_MIX, *MOE, "steps=10",
                                      f"model.router_aux_loss_coef={coef}"), run) == "completed"
        weights[coef] = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]
        weights[coef, "row"] = read_metrics(run / "metrics.csv")[0]
    assert weights[0.0, "row"]["train_loss"] == weights[0.01, "row"]["train_loss"]
    assert not torch.equal(weights[0.0]["lm.model.layers.0.mlp.gate.weight"],
                           weights[0.01]["lm.model.layers.0.mlp.gate.weight"])


def test_the_testbed_preset_runs_through_the_cli_and_its_snapshots_load(tmp_path):
    from conftest import grok_here
    from transformers import OlmoeForCausalLM

    run = tmp_path / "run"
    grok_here("run", "experiment=pathways_testbed", "steps=4", "eval_every=2", "ckpt_every=2",
         "save_every=2", "progress=log", f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",".join(f"test_acc/{g}" for g in GROUPS))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["snapshots"] == [f"checkpoints/step_{n}" for n in (0, 2, 4)]
    assert set(summary["groups"]) == set(GROUPS)
    lm = OlmoeForCausalLM.from_pretrained(run / "checkpoints" / "step_4")
    config = lm.config
    assert (config.num_hidden_layers, config.num_experts, config.num_experts_per_tok,
            config.router_aux_loss_coef) == (4, 8, 2, 0.01)
