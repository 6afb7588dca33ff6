"""The `sampling` group (training/sampling.py) and the draws that make a Grokfast run theirs:
epoch batches, the split that follows the seed, their init order."""

from __future__ import annotations

import pytest
import torch

from grok_cli.training.members import build_task_and_model
from grok_cli.training.sampling import build_sampler

CPU = torch.device("cpu")


def sampler(run_cfg, *overrides, n=4656):
    return build_sampler(run_cfg(*overrides), n, CPU)


def test_replacement_draws_are_todays(run_cfg):
    """sampling=replacement (the default) draws exactly what grok always drew."""
    cfg = run_cfg("batch_size=512", "seed=3")
    assert cfg.sampling.name == "replacement"
    ours = build_sampler(cfg, 618, CPU)
    generator = torch.Generator(CPU).manual_seed(3)
    for _ in range(5):
        assert torch.equal(ours.indices(), torch.randint(618, (512,), generator=generator))


def test_epoch_batches_cover_the_split_once_per_epoch(run_cfg):
    """4,656 examples in 512s: 9 × 512 + 48, each example once per epoch, and each epoch's
    permutation reorders the previous epoch's order (Grokfast's train_data[:, randperm])."""
    ours = sampler(run_cfg, "sampling=epoch", "batch_size=512", "seed=7")
    generator = torch.Generator().manual_seed(7)
    order = torch.arange(4656)
    for _ in range(3):
        batches = [ours.indices() for _ in range(10)]
        assert [len(b) for b in batches] == [512] * 9 + [48]
        assert torch.equal(torch.cat(batches).sort().values, torch.arange(4656))
        order = order[torch.randperm(4656, generator=generator)]
        assert torch.equal(torch.cat(batches), order)


def test_epoch_drop_last_skips_the_short_batch(run_cfg):
    ours = sampler(run_cfg, "sampling=epoch", "sampling.drop_last=true", "batch_size=512")
    sizes = [len(ours.indices()) for _ in range(27)]
    assert sizes == [512] * 27  # 3 epochs of 9: the 48 left over are never drawn
    assert sampler(run_cfg, "sampling=epoch", "batch_size=5000").indices() is None  # full


def test_epoch_without_shuffle_cycles_the_split_in_its_order(run_cfg):
    """shuffle=false: the Critical Data Size text loop's cycled DataLoader (no shuffle): 10
    examples in 4s are [0-3], [4-7], [8, 9] and again, or without the short one."""
    ours = sampler(run_cfg, "sampling=epoch", "sampling.shuffle=false", "batch_size=4", n=10)
    kept = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [ours.indices().tolist() for _ in range(6)] == kept * 2
    ours = sampler(run_cfg, "sampling=epoch", "sampling.shuffle=false",
                   "sampling.drop_last=true", "batch_size=4", n=10)
    assert [ours.indices().tolist() for _ in range(4)] == kept[:2] * 2


def test_epoch_resume_mid_epoch_continues_the_same_permutation(run_cfg):
    args = ("sampling=epoch", "batch_size=512")
    straight = sampler(run_cfg, *args)
    expected = [straight.indices() for _ in range(25)]
    first = sampler(run_cfg, *args)
    for _ in range(13):  # into the second epoch
        first.indices()
    state = first.state_dict()
    resumed = sampler(run_cfg, *args)
    resumed.load_state_dict(state)
    for want in expected[13:]:
        assert torch.equal(resumed.indices(), want)


def test_global_generator_continues_after_the_model_and_split(run_cfg):
    """sampling.generator=global, task.split_seed=global: one stream, seeded by `seed`, draws
    the init, then the split, then every epoch's permutation (as Grokfast's main.py)."""
    cfg = run_cfg("experiment=grokfast_mul97", "task.p=23", "seed=2", "batch_size=100")
    task, _ = build_task_and_model(cfg, CPU)
    after_split = torch.get_rng_state()
    ours = build_sampler(cfg, len(task.train), CPU)
    torch.set_rng_state(after_split)
    expected = torch.randperm(len(task.train))
    assert torch.equal(torch.cat([ours.indices() for _ in range(2)]), expected[:200])


def test_global_split_follows_the_seed(run_cfg):
    def split(seed, *more):
        cfg = run_cfg("experiment=grokfast_mul97", "task.p=23", f"seed={seed}", *more)
        return build_task_and_model(cfg, CPU)[0].test.x
    assert torch.equal(split(0), split(0))
    assert not torch.equal(split(0), split(1))
    fixed = ("task.split_seed=0",)
    assert torch.equal(split(0, *fixed), split(1, *fixed))  # an integer: one split for all


def test_global_split_is_their_randperm_after_their_decoder(run_cfg):
    """Seed S: their Decoder's draws (nn.Embedding ×2, per block MultiheadAttention then two
    Linear, the head), then torch.randperm(N).split(N // 2); same weights, same split."""
    from torch import nn

    cfg = run_cfg("experiment=grokfast_mul97", "task.p=23", "seed=4")
    task, model = build_task_and_model(cfg, CPU)
    torch.manual_seed(4)
    embeddings = nn.Embedding(25, 128), nn.Embedding(5, 128)
    blocks = [(nn.MultiheadAttention(128, 4), nn.Linear(128, 512), nn.Linear(512, 128))
              for _ in range(2)]
    head = nn.Linear(128, 25, bias=False)
    train_idx = torch.randperm(23 * 22).split(23 * 22 // 2)[0]
    gpt = model.lm.transformer
    assert torch.equal(gpt.wte.weight, embeddings[0].weight)
    assert torch.equal(gpt.wpe.weight, embeddings[1].weight)
    for block, (attn, fc, proj) in zip(gpt.h, blocks, strict=True):
        assert torch.equal(block.attn.c_attn.weight, attn.in_proj_weight.T)
        assert torch.equal(block.attn.c_proj.weight, attn.out_proj.weight.T)
        assert torch.equal(block.attn.c_proj.bias, torch.zeros(128))
        assert torch.equal(block.mlp.c_fc.bias, fc.bias)
        assert torch.equal(block.mlp.c_proj.weight, proj.weight.T)
    assert torch.equal(model.lm.lm_head.weight, head.weight)
    a, b = train_idx // 22, train_idx % 22 + 1  # their cartesian_prod(arange(p), arange(1, p))
    assert torch.equal(task.train.x[:, 0], a) and torch.equal(task.train.x[:, 2], b)


@pytest.mark.parametrize("key, value", [("sampling.drop_last", "3"),
                                        ("sampling.shuffle", "maybe"),
                                        ("sampling.generator", "mine"),
                                        ("task.split_seed", "always"),
                                        ("optimizer.warmup_from_zero", "2")])
def test_bad_protocol_keys_are_one_error_line(run_cfg, key, value):
    from grok_cli.errors import GrokError
    from grok_cli.training.optim import build_optimizer

    cfg = run_cfg("experiment=grokfast_mul97", "task.p=23", f"{key}={value}")
    with pytest.raises(GrokError, match=key.replace(".", r"\.")):
        task, model = build_task_and_model(cfg, CPU)
        build_sampler(cfg, len(task.train), CPU)
        build_optimizer(cfg.optimizer, cfg.weight_decay, model)


def test_train_metrics_epoch_counts_the_epochs_batches_before_their_updates(run_cfg, tmp_path):
    """train_metrics=epoch (Grokfast's train accuracy): at an evaluation that closes exactly
    one epoch, train_acc is the count of right answers over that epoch's batches, each by the
    model before its update, over the whole split; the first row (no epoch yet) and a row
    after a partial epoch come from a pass over the split."""
    import torch.nn.functional as F
    from conftest import read_rows

    from grok_cli.training.evaluation import correct_counts, evaluate
    from grok_cli.training.optim import build_optimizer
    from grok_cli.training.run import run_experiment

    args = ("experiment=grokfast_mul97", "task.p=23", "batch_size=100", "eval_every=3",
            "ckpt_every=3", "steps=4", "progress=log")  # 253 examples: epochs of 100, 100, 53
    run_experiment(run_cfg(*args), tmp_path / "run")
    rows = read_rows(tmp_path / "run" / "metrics.csv")
    cfg = run_cfg(*args)
    task, model = build_task_and_model(cfg, CPU)
    ours = build_sampler(cfg, len(task.train), CPU)
    optimizer, schedule = build_optimizer(cfg.optimizer, cfg.weight_decay, model)
    model.eval()
    _, right0 = evaluate(model, task.train, 1024)
    model.train()
    right, loss_sum = 0, 0.0
    for step in range(4):
        batch = task.train.subset(ours.indices())
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        if step < 3:
            right += int(correct_counts(logits, batch.y).sum())
            loss_sum += float(loss.detach()) * len(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    assert [row["step"] for row in rows] == ["0", "3", "4"]
    assert float(rows[0]["train_acc"]) == int(right0.sum()) / 253
    assert float(rows[1]["train_acc"]) == right / 253
    assert float(rows[1]["train_loss"]) == pytest.approx(loss_sum / 253, rel=1e-6)
    model.eval()
    _, right4 = evaluate(model, task.train, 1024)  # step 4: one batch of an epoch
    assert float(rows[2]["train_acc"]) == int(right4.sum()) / 253


def test_grokfast_protocol_resumes_to_the_same_rows(run_cfg, tmp_path):
    """sampling=epoch with the global generator and train_metrics=epoch: a run continued from
    its checkpoint (mid-way through the second epoch's permutation too) writes the rows of
    the uninterrupted run, train_acc (the epoch's batch counts) included."""
    from conftest import read_rows

    from grok_cli.training.run import run_experiment

    args = ("experiment=grokfast_mul97", "task.p=23", "batch_size=100", "eval_every=3",
            "ckpt_every=3", "grokfast=ema", "progress=log")
    run_experiment(run_cfg(*args, "steps=12"), tmp_path / "straight")
    run_experiment(run_cfg(*args, "steps=6"), tmp_path / "part")
    run_experiment(run_cfg(*args, "steps=12"), tmp_path / "part")
    drop = ("elapsed_s",)
    rows = {name: [{k: v for k, v in row.items() if k not in drop}
                   for row in read_rows(tmp_path / name / "metrics.csv")]
            for name in ("straight", "part")}
    assert [row["step"] for row in rows["part"]] == ["0", "3", "6", "9", "12"]
    assert rows["part"] == rows["straight"]


@pytest.mark.parametrize("extra, allowed", [
    (["train_metrics=epoch"], "split with sampling=replacement"),
    (["sampling=epoch", "train_metrics=epoch", "model.dropout=0.1"],
     "split with a model whose training forward is noisy"),
])
def test_train_metrics_epoch_is_refused_where_it_cannot_count(tmp_path, extra, allowed):
    """Without whole epochs of batches, or with dropout in the training forward, the epoch's
    sums are not the model's accuracy: one line, exit 2, no folder left."""
    from conftest import TINY, grok_here

    run = tmp_path / "run"
    result = grok_here("run", *TINY, "batch_size=16", *extra, f"hydra.run.dir={run}",
                       cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: train_metrics='epoch' is not allowed: {allowed}")
    assert not run.exists()
