"""The levers on time-to-grok: StableMax, Grokfast, ⊥Grad, early stop; their checks and
checkpoints. Each against a direct computation."""

from __future__ import annotations

import csv
import io
import json
from collections import deque

import pytest
import torch
from conftest import TINY

from grok_cli.errors import GrokError
from grok_cli.runfolder.checkpoints import save_checkpoint
from grok_cli.training.checkpoint import load_checkpoint
from grok_cli.training.grokfast import build_grad_filter
from grok_cli.training.losses import stablemax_cross_entropy
from grok_cli.training.optim import build_optimizer
from grok_cli.training.run import run_experiment
from grok_cli.training.trainer import build_session

TINY_RUN = [t for t in TINY if not t.startswith("progress")]


def read_rows(path):
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_stablemax_by_hand():
    logits = torch.tensor([[0.0, 1.0, -1.0], [3.0, -3.0, 0.5]])
    # s = [1, 2, 1/2] and [4, 1/4, 3/2]
    expected = torch.tensor([-torch.log(torch.tensor(2 / 3.5, dtype=torch.float64)),
                             -torch.log(torch.tensor(1.5 / 5.75, dtype=torch.float64))])
    labels = torch.tensor([1, 2])
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(stablemax_cross_entropy(logits, labels, reduction="sum"),
                               expected.sum(), rtol=1e-12, atol=0)


def test_stablemax_gradient_is_finite_where_the_unused_branch_is_not():
    logits = torch.tensor([[1.0, 0.0, 2.0, 1e6]], requires_grad=True)  # 1/(1 - 1) = inf
    stablemax_cross_entropy(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()
    s = torch.tensor([2.0, 1.0, 3.0, 1e6 + 1], dtype=torch.float64)
    # d/dx_j of log(sum s) - log(s_0) with s' = 1 for x >= 0
    expected = 1 / s.sum() - torch.tensor([1 / 2.0, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(logits.grad[0].double(), expected, rtol=1e-6, atol=1e-12)


def test_stablemax_runs_train_and_test_losses(run_cfg, tmp_path):
    """loss=stablemax is the loss the run trains on and reports, for train and test alike."""
    cfg = run_cfg(*TINY_RUN, "loss=stablemax", "steps=10", "eval_every=10")
    session = build_session(cfg, tmp_path)  # the model as the run will start it

    @torch.no_grad()
    def by_formula(split):
        logits = session.model(split.x, split.mask).double()
        s = torch.where(logits >= 0, logits + 1, 1 / (1 - logits))
        return -(s.gather(1, split.y[:, None])[:, 0] / s.sum(1)).log().mean().item()

    expected = by_formula(session.task.train), by_formula(session.task.test)
    run_experiment(cfg, tmp_path)
    row = read_rows(tmp_path / "metrics.csv")[0]
    assert (row["train_loss"], row["test_loss"]) == pytest.approx(expected, rel=1e-5)


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def tiny_loss(model, step):
    g = torch.Generator().manual_seed(step)
    x, target = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    return ((model(x) - target) ** 2).mean()


def filtered_sgd(model, steps, grad_filter=None, start=0, lr=0.1):
    for step in range(start, start + steps):
        model.zero_grad(set_to_none=True)
        tiny_loss(model, step).backward()
        if grad_filter:
            grad_filter()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad


def hand_filtered_sgd(model, steps, name, lamb, alpha=0.98, window=3, lr=0.1):
    """Grokfast by its formulas (Lee et al. 2024), gradient by gradient."""
    params = list(model.parameters())
    ema, past = [None] * len(params), [deque(maxlen=window) for _ in params]
    for step in range(steps):
        grads = torch.autograd.grad(tiny_loss(model, step), params)
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                if name == "ema":
                    ema[i] = g.clone() if ema[i] is None else alpha * ema[i] + (1 - alpha) * g
                    g = g + lamb * ema[i]
                else:
                    past[i].append(g.clone())
                    if len(past[i]) == window:  # warmup: once the window is full
                        g = g + lamb * sum(past[i]) / window
                p -= lr * g


@pytest.mark.parametrize("name", ["ema", "ma"])
def test_grokfast_filters_equal_their_formulas(run_cfg, name):
    cfg = run_cfg(f"grokfast={name}", "grokfast.window_size=3" if name == "ma" else "seed=0")
    model, by_hand = tiny_model(), tiny_model()
    filtered_sgd(model, 6, build_grad_filter(cfg.grokfast, model))
    hand_filtered_sgd(by_hand, 6, name, lamb={"ema": 2.0, "ma": 5.0}[name])  # the papers' λ
    for p, q in zip(model.parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    plain = tiny_model()
    filtered_sgd(plain, 6)
    assert not torch.allclose(next(plain.parameters()), next(model.parameters()), atol=1e-4)


@pytest.mark.parametrize("name", ["ema", "ma"])
def test_grokfast_memory_survives_a_checkpoint(run_cfg, name):
    cfg = run_cfg(f"grokfast={name}", "grokfast.window_size=3" if name == "ma" else "seed=0")
    straight = tiny_model()
    filtered_sgd(straight, 7, build_grad_filter(cfg.grokfast, straight))
    first = tiny_model()
    grad_filter = build_grad_filter(cfg.grokfast, first)
    filtered_sgd(first, 4, grad_filter)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "grokfast": grad_filter.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # as checkpoints are read
    resumed = tiny_model()
    resumed.load_state_dict(state["model"])
    resumed_filter = build_grad_filter(cfg.grokfast, resumed)
    resumed_filter.load_state_dict(state["grokfast"])
    filtered_sgd(resumed, 3, resumed_filter, start=4)
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_orthogonal_update_is_perpendicular_to_the_weights_with_the_gradients_norm(run_cfg):
    cfg = run_cfg("optimizer=sgd", "optimizer.momentum=0", "optimizer.lr=0.1",
                  "optimizer.orthogonal=true")
    model = tiny_model()
    optimizer, _ = build_optimizer(cfg.optimizer, 0.0, model)
    before = [p.detach().clone() for p in model.parameters()]
    tiny_loss(model, 0).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    for w, g, p in zip(before, grads, model.parameters(), strict=True):
        update = (p.detach() - w).flatten().double()
        w, g = w.flatten().double(), g.flatten().double()
        assert abs(w @ update) <= 1e-6 * w.norm() * update.norm()
        assert update.norm().item() == pytest.approx(0.1 * g.norm().item(), rel=1e-5)
        perp = g - (w @ g) / (w @ w) * w  # Prieto et al.'s g⊥, then rescaled to |g|
        torch.testing.assert_close(update, -0.1 * perp * g.norm() / perp.norm(), rtol=1e-4,
                                   atol=1e-7)
    assert set(optimizer.state_dict()) == {"state", "param_groups"}  # the base optimizer's


def first_stop(rows, level, patience):
    streak = 0
    for row in rows:
        streak = streak + 1 if row["test_acc"] >= level else 0
        if streak == patience:
            return int(row["step"])
    return None


def test_early_stop_counts_consecutive_rows_at_the_level_and_replays_them():
    from omegaconf import OmegaConf

    from grok_cli.training.stop import EarlyStop

    rows = [{"test_acc": acc} for acc in (0.6, 0.4, 0.5, 0.7, 0.5)]
    cfg = OmegaConf.create({"test_acc": 0.5, "patience": 3})
    stop = EarlyStop(cfg)
    # streaks 1, 0, 1 (0.5 reaches the level), 2, 3
    assert [stop.update(row) for row in rows] == [False, False, False, False, True]
    resumed = EarlyStop(cfg)
    resumed.replay(rows[:4])  # the rows kept before a checkpoint count toward the streak
    assert resumed.update(rows[4]) is True
    never = EarlyStop(OmegaConf.create({"test_acc": None, "patience": 1}))
    assert not any(never.update({"test_acc": 1.0}) for _ in range(3))


def test_early_stop_ends_a_run_once_it_held_the_level_and_resumes_its_count(run_cfg,
                                                                          tmp_path):
    common = (*TINY_RUN, "steps=60", "eval_every=10", "ckpt_every=10")
    run_experiment(run_cfg(*common), tmp_path / "full")
    rows = read_rows(tmp_path / "full" / "metrics.csv")
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["stopped_early"] is False
    level = min(r["test_acc"] for r in rows[1:4])
    stop = first_stop(rows, level, 3)
    assert stop in (20, 30)
    stopping = (*common, f"stop.test_acc={level}", "stop.patience=3")
    # Interrupted one evaluation short of the stop, the resumed run counts the kept rows.
    part = tmp_path / "part"
    run_experiment(run_cfg(*stopping[:-3], f"steps={stop - 10}", *stopping[-2:]), part)
    assert run_experiment(run_cfg(*stopping), part) == "completed"
    got = read_rows(part / "metrics.csv")
    assert got == [r | {"elapsed_s": g["elapsed_s"]} for r, g in zip(rows, got, strict=False)]
    assert got[-1]["step"] == stop
    summary = json.loads((part / "summary.json").read_text())
    assert (summary["status"], summary["stopped_early"]) == ("completed", True)
    assert torch.load(part / "checkpoints" / "last.pt")["step"] == stop


def test_old_checkpoints_without_the_new_keys_still_resume(run_cfg, tmp_path):
    old = [*TINY_RUN, "optimizer=adamw"]  # constant lr: all a run had before decay_steps
    cfg = run_cfg(*old, "steps=10", "eval_every=10")
    run_experiment(cfg, tmp_path)
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    identity = state["identity"]
    for key in ("loss", "grokfast"):
        del identity[key]
    del identity["task"]["format"], identity["task"]["nonzero_b"]
    for key in ("orthogonal", "decay_steps", "min_lr"):
        del identity["optimizer"][key]
    save_checkpoint(path, state)
    load_checkpoint(path, cfg)  # as written before these keys existed: the same run
    for changed, key in [("grokfast=ema", "grokfast"), ("task.format=power", "task"),
                         ("optimizer.orthogonal=true", "optimizer"), ("loss=stablemax", "loss"),
                         ("optimizer.decay_steps=5", "optimizer")]:
        with pytest.raises(GrokError, match=f"does not match this run: {key}[.:]"):
            load_checkpoint(path, run_cfg(*old, changed))



def test_a_folder_recorded_before_a_whole_group_existed_continues(run_cfg, tmp_path):
    """A run folder whose record and checkpoint predate the `sampling` group and
    `optimizer.warmup_from_zero` continues (both sides compared at the defaults), and an
    analysis holding such a record against a new snapshot sees the same run."""
    from omegaconf import OmegaConf

    from grok_cli.training.checkpoint import check_identity, identity

    args = [*TINY_RUN, "batch_size=16", "eval_every=10"]
    run_experiment(run_cfg(*args, "steps=10"), tmp_path)
    record = tmp_path / ".hydra" / "config.yaml"
    old = OmegaConf.load(record)
    del old["sampling"], old["optimizer"]["warmup_from_zero"]
    OmegaConf.save(old, record)
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    del state["identity"]["sampling"], state["identity"]["optimizer"]["warmup_from_zero"]
    save_checkpoint(path, state)
    assert run_experiment(run_cfg(*args, "steps=20"), tmp_path) == "completed"
    assert [r["step"] for r in read_rows(tmp_path / "metrics.csv")] == [0, 10, 20]
    check_identity(identity(run_cfg(*args)), old, path, where="snapshot")
    with pytest.raises(GrokError, match="does not match this run: sampling"):
        check_identity(identity(run_cfg(*args, "sampling=epoch")), old, path)

BAD_VALUES = [
    ("task.format=text", "task.format"),
    ("task.nonzero_b=2", "task.nonzero_b"),
    ("task.op=x4", "task.op"),
    ("loss.name=hinge", "loss.name"),
    ("grokfast=ema grokfast.alpha=2", "grokfast.alpha"),
    ("grokfast=ema grokfast.lamb=-1", "grokfast.lamb"),
    ("grokfast=ma grokfast.window_size=0", "grokfast.window_size"),
    ("grokfast=ma grokfast.warmup=3", "grokfast.warmup"),
    ("grokfast.name=kalman", "grokfast.name"),
    ("optimizer.orthogonal=2", "optimizer.orthogonal"),
    ("stop.test_acc=1.5", "stop.test_acc"),
    ("stop.patience=0", "stop.patience"),
    ("model=gpt2 model.tie_embeddings=3", "model.tie_embeddings"),
    ("model=gpt2 model.activation=swish9", "model.activation"),
    ("model=gpt2 model.init=xavier", "model.init"),
    ("model=gpt2 model.block=post_ln", "model.block"),
    ("model=nanda model.mlp_size=0", "model.mlp_size"),
    ("model=onehot_mlp model.hidden_sizes=[]", "model.hidden_sizes"),
    ("model=onehot_mlp model.bias=1", "model.bias"),
]


def test_gpt2_checkpoints_from_before_model_block_resume_with_gpt2s_block(run_cfg, tmp_path):
    old = [*TINY_RUN, "model=gpt2", "steps=10", "eval_every=10"]
    run_experiment(run_cfg(*old), tmp_path)
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    del state["identity"]["model"]["block"]
    save_checkpoint(path, state)
    load_checkpoint(path, run_cfg(*old))  # the block every gpt2 run had then
    with pytest.raises(GrokError, match="does not match this run: model\\."):
        load_checkpoint(path, run_cfg(*old, "model.block=grokfast"))


@pytest.mark.parametrize(("overrides", "key"), BAD_VALUES)
def test_bad_values_of_new_keys_are_one_error_before_anything_is_written(run_cfg, tmp_path,
                                                                        overrides, key):
    base = [t for t in TINY_RUN if not t.startswith("model.")]  # some models lack these keys
    with pytest.raises(GrokError) as err:
        build_session(run_cfg(*base, *overrides.split()), tmp_path)
    assert str(err.value).startswith(f"{key}=") and "allowed" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    if key == "grokfast.alpha":  # the whole message, as `grok run` prints it after "error: "
        assert str(err.value) == ("grokfast.alpha=2 is not allowed: a number in [0, 1) "
                                  "(the EMA's momentum)")


@pytest.mark.parametrize("group", ["loss", "grokfast", "logger", "tokenizer", "sampling"])
def test_records_from_before_targets_build_each_choices_own_code(group, tmp_path):
    """A run recorded before its group files named their code: its `name` picks the shipped
    file's `_target_` (registry.target), and each choice has code of its own."""
    from omegaconf import OmegaConf

    from grok_cli import registry
    from grok_cli.config import conf_dir, load_yaml, plain
    from grok_cli.training.loggers import build_loggers
    from grok_cli.training.losses import build_loss

    files = [load_yaml(path) for path in sorted((conf_dir() / group).glob("*.yaml"))]
    records = [OmegaConf.create(plain(file)) for file in files]  # without `_target_`
    assert [registry.target(group, record) for record in records] == [f._target_ for f in files]
    assert len({registry.resolve(group, file._target_) for file in files}) == len(files)
    record = OmegaConf.create(plain(files[0]))
    if group == "loss":  # conf/loss/cross_entropy.yaml
        assert build_loss(record).__name__ == "cross_entropy"
    if group == "grokfast":  # conf/grokfast/ema.yaml
        assert type(build_grad_filter(record, tiny_model())).__name__ == "EMA"
    if group == "logger":  # conf/logger/csv.yaml
        assert build_loggers(OmegaConf.create({"logger": record}), tmp_path) == []
