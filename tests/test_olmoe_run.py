"""`grok run model=olmoe` with step snapshots, then `grok pathways moe.from_run=RUN`, end to end.

One tiny `grok run` and the `grok pathways` over it go through the CLI entry point in-process
(cli.main); the α and resume checks train through `run_experiment`, the function the CLI calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import grok_in_process, logging_restored, read_rows, torch_defaults
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, OlmoeForCausalLM

from grok_cli.models import build_model
from grok_cli.models.olmoe import MoEAnswer
from grok_cli.tasks import build_task
from grok_cli.training.run import run_experiment

MOE = ["model=olmoe", "task.p=11", "model.hidden_size=32", "model.num_layers=2",
       "model.num_heads=2", "model.intermediate_size=32", "model.num_experts=4",
       "model.num_experts_per_tok=2", "eval_every=10", "ckpt_every=20", "save_every=20",
       "alpha=1", "progress=log"]
STEPS = (0, 20, 40)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("olmoe")
    # module scope: the function-scoped fixtures (one thread, logging) do not cover it yet
    with pytest.MonkeyPatch.context() as monkeypatch, logging_restored(), torch_defaults():
        code = grok_in_process(["run", *MOE, "steps=40", f"hydra.run.dir={root / 'run'}"], root,
                               monkeypatch)
    assert code == 0
    return root / "run"


def test_snapshots_are_atomic_save_pretrained_folders(run_dir: Path) -> None:
    folders = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert folders == ["last.pt", *(f"step_{n}" for n in STEPS)]  # no temporary leftovers
    for step in STEPS:
        assert (run_dir / "checkpoints" / f"step_{step}" / "model.safetensors").is_file()


def test_snapshots_reproduce_the_run(run_dir: Path) -> None:
    """Each snapshot, loaded by the HF auto class, gives the run's logits and test accuracy."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    task = build_task(cfg, torch.device("cpu"))
    test_acc = {int(r["step"]): float(r["test_acc"]) for r in read_rows(run_dir / "metrics.csv")}
    wrapper = build_model(cfg.model, task)
    for step in STEPS:
        lm = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoints" / f"step_{step}")
        assert isinstance(lm, OlmoeForCausalLM) and lm.config.num_experts == 4
        assert lm.config.num_experts_per_tok == 2 and lm.config.norm_topk_prob is False
        wrapper.lm.load_state_dict(lm.state_dict())
        with torch.no_grad():
            # the full sequence `a + b % p = c`: the answer is predicted at the `=` position
            full = torch.cat([task.test.x, task.test.y[:, None]], 1)
            snapshot_logits = lm.eval()(input_ids=full).logits[:, -2]
            wrapper_logits = wrapper.eval()(task.test.x)
        torch.testing.assert_close(snapshot_logits, wrapper_logits, rtol=1e-4, atol=1e-5)
        accuracy = (snapshot_logits.argmax(-1) == task.test.y).float().mean().item()
        assert accuracy == pytest.approx(test_acc[step], abs=1e-6)


def test_alpha_rescales_the_moe(run_dir: Path, run_cfg, tmp_path: Path) -> None:
    cfg = run_cfg(*MOE, "steps=1", "eval_every=1", "ckpt_every=1", "save_every=1", "alpha=3")
    assert run_experiment(cfg, tmp_path) == "completed"
    norm = {name: float(read_rows(d / "metrics.csv")[0]["l2_norm"])
            for name, d in (("alpha3", tmp_path), ("alpha1", run_dir))}
    assert norm["alpha3"] == pytest.approx(3 * norm["alpha1"], rel=1e-5)
    scaled = OlmoeForCausalLM.from_pretrained(tmp_path / "checkpoints" / "step_0")
    plain = OlmoeForCausalLM.from_pretrained(run_dir / "checkpoints" / "step_0")
    for (name, a), b in zip(scaled.state_dict().items(), plain.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, 3 * b, msg=name)


def test_resume_continues_snapshots(run_dir: Path, run_cfg, tmp_path: Path) -> None:
    """20 steps, then resume to 40: the same step_40 as the uninterrupted CLI run."""
    assert run_experiment(run_cfg(*MOE, "steps=20"), tmp_path) == "completed"
    assert run_experiment(run_cfg(*MOE, "steps=40"), tmp_path) == "completed"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == [
        "step_0", "step_20", "step_40"]
    resumed = OlmoeForCausalLM.from_pretrained(tmp_path / "checkpoints" / "step_40")
    straight = OlmoeForCausalLM.from_pretrained(run_dir / "checkpoints" / "step_40")
    for (name, a), b in zip(resumed.state_dict().items(), straight.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_save_step_replaces_an_existing_snapshot(tmp_path: Path, run_cfg) -> None:
    cfg = run_cfg(*MOE)
    model = build_model(cfg.model, build_task(cfg, torch.device("cpu")))
    assert isinstance(model, MoEAnswer)
    target = tmp_path / "step_5"
    model.save_step(target)
    with torch.no_grad():
        model.lm.lm_head.weight.add_(1.0)
    model.save_step(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_5"]
    loaded = OlmoeForCausalLM.from_pretrained(target)
    torch.testing.assert_close(loaded.lm_head.weight, model.lm.lm_head.weight)


def test_pathways_from_run(run_dir: Path, tmp_path: Path, grok_main) -> None:
    out = tmp_path / "pathways"
    assert grok_main(["pathways", f"moe.from_run={run_dir}", f"hydra.run.dir={out}"],
                     tmp_path) == 0
    rows = [r for r in read_rows(out / "pathways.csv") if r["group"] == "all"]
    assert [r["checkpoint"] for r in rows] == [f"step_{n}" for n in STEPS]
    test_acc = {f"step_{r['step']}": float(r["test_acc"])
                for r in read_rows(run_dir / "metrics.csv")}
    assert [float(r["accuracy"]) for r in rows] == [test_acc[r["checkpoint"]] for r in rows]
    n_train = len(build_task(OmegaConf.load(run_dir / ".hydra" / "config.yaml")).train)
    assert {r["n_samples"] for r in rows} == {str(n_train)}
    correlations = read_rows(out / "correlations.csv")
    assert {(r["group"], r["metric"]) for r in correlations} >= {
        ("all", m) for m in ("d_path", "consistency", "complexity", "loss")}
    assert all(r["n"] == "3" for r in correlations if r["group"] == "all")

    # moe.batch_size (auto: 512 here) is speed only: 3 samples a pass give the same samples
    small = tmp_path / "small_batches"
    assert grok_main(["pathways", f"moe.from_run={run_dir}", "moe.batch_size=3",
                      f"hydra.run.dir={small}"], tmp_path) == 0
    auto, three = read_rows(out / "pathways_samples.csv"), read_rows(small / "pathways_samples.csv")
    assert [r["pathway"] for r in auto] == [r["pathway"] for r in three]
    assert [float(r["loss"]) for r in auto] == pytest.approx([float(r["loss"]) for r in three],
                                                             rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("value", ["0", "-5", "2.5"])
def test_save_every_must_be_positive(run_cfg, value: str) -> None:
    from grok_cli.config import validate_run_config
    from grok_cli.errors import GrokError

    with pytest.raises(GrokError, match=f"save_every={value}"):
        validate_run_config(run_cfg(*MOE, f"save_every={value}"))
