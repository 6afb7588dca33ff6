"""`grok pathways` through the CLI: tiny saved OLMoE checkpoints, outputs, and one-line errors.

Every run calls the CLI entry point in-process (grok_cli.cli.main, the `grok_main` fixture),
which saves the interpreter start-up and the torch import each time. The inputs are shared by
the module and only read; each test writes under its own tmp_path.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from conftest import read_rows
from omegaconf import OmegaConf
from test_pathways import tiny_olmoe
from transformers import GPT2Config, GPT2LMHeadModel

from grok_cli import cli
from grok_cli.tasks import build_task

CHECKPOINTS = ["ck0", "ck1", "ck2"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pathways")
    for seed, name in enumerate(CHECKPOINTS):
        tiny_olmoe(seed).save_pretrained(root / name)
    tiny_olmoe(0, experts=4).save_pretrained(root / "four_experts")
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2,
                               n_positions=64, bos_token_id=1,
                               eos_token_id=1)).save_pretrained(root / "gpt2")
    generator = torch.Generator().manual_seed(0)
    with (root / "data.jsonl").open("w") as handle:
        for i in range(10):
            length = int(torch.randint(3, 12, (1,), generator=generator))
            ids = torch.randint(2, 64, (length,), generator=generator)
            record = {"id": f"s{i}", "group": "code" if i % 2 else "web", "input_ids": ids.tolist()}
            handle.write(json.dumps(record) + "\n")
    (root / "acc.csv").write_text("checkpoint,accuracy\nck0,0.1\nck1,0.3\nck2,0.2\n")
    (root / "no_tokens.jsonl").write_text('{"id": 1, "words": "hello"}\n')
    return root


def test_end_to_end_outputs(workdir: Path, tmp_path: Path, grok_main, capsys) -> None:
    out = tmp_path / "out"
    code = grok_main(["pathways", f"moe.checkpoints=[{','.join(CHECKPOINTS)}]",
                      "data.path=data.jsonl", "accuracy=acc.csv", "memorization.epsilon=100",
                      "memorization.delta=100", f"hydra.run.dir={out}"], workdir)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Loading weights" not in err  # one bar per checkpoint would flood it
    for name in ("pathways_samples.csv", "pathways.csv", "correlations.csv", "pathways.json",
                 "pathways.png", "pathways_groups.png"):
        assert (out / name).is_file(), name
    samples = read_rows(out / "pathways_samples.csv")
    assert len(samples) == 30
    assert {"checkpoint", "sample_id", "group", "loss", "pathway", "consistency",
            "complexity"} <= set(samples[0])
    rows = read_rows(out / "pathways.csv")
    assert {"checkpoint", "group", "n_samples", "d_path_mean", "d_path_std", "n_pairs",
            "consistency_mean", "complexity_mean", "loss_mean", "d_path_layer_0",
            "d_path_layer_1"} <= set(rows[0])
    groups = {row["group"] for row in rows}
    # epsilon = delta = 100: every sample is memorized from the first checkpoint
    assert groups == {"all", "code", "web", "Pretrain@ck0"}
    assert [r["accuracy"] for r in rows if r["group"] == "all"] == ["0.1", "0.3", "0.2"]
    correlations = read_rows(out / "correlations.csv")
    assert set(correlations[0]) == {"group", "metric", "pearson", "spearman", "n"}
    assert {r["metric"] for r in correlations} == {"d_path", "consistency", "complexity",
                                                    "loss", "loss_ma"}
    summary = json.loads((out / "pathways.json").read_text())
    assert summary["n_samples"] == 10 and summary["checkpoints"] == CHECKPOINTS


@pytest.mark.parametrize(("args", "message"), [
    (["moe.checkpoints=[ck0,four_experts]", "data.path=data.jsonl"], "differ in architecture"),
    (["moe.checkpoints=[gpt2]", "data.path=data.jsonl"], "without MoE layers"),
    (["moe.checkpoints=[ck0,ck1]", "data.path=no_tokens.jsonl"], "neither a `text` nor"),
    (["moe.checkpoints=[ck0,ck1]", "data.path=data.jsonl", "accuracy=acc.csv"],
     "'ck2' is none of the checkpoints"),
    (["moe.checkpoints=[ck0]", "data.path=data.jsonl", "pathway.threshold=1.5"],
     "pathway.threshold=1.5"),
    (["data.path=data.jsonl"], "exactly one of moe.checkpoints"),
    (["moe=local", "data.path=data.jsonl"], "moe=local needs moe.checkpoints="),
    (["moe=from_run"], "moe=from_run needs moe.from_run="),
    (["moe=olmoe_1b_7b", "moe.checkpoints=[ck0]", "data.path=data.jsonl"], "exactly one of"),
    (["moe.checkpoints=[ck0]", "data.path=data.jsonl", "moe.batch_size=0"],
     "moe.batch_size=0 is not allowed: auto or a positive integer"),
    (["moe.checkpoints=[ck0]", "data.path=data.jsonl", "memorization.epsilon=most"],
     "memorization.epsilon='most' is not allowed: a loss value >= 0, or auto"),
    (["moe.checkpoints=[ck0]", "data.path=data.jsonl", "threads=0"],
     "threads=0 is not allowed: auto or a positive integer"),
])
def test_bad_input_is_one_line(workdir: Path, tmp_path: Path, grok_main,
                               capsys: pytest.CaptureFixture, args: list[str],
                               message: str) -> None:
    code = grok_main(["pathways", *args, f"hydra.run.dir={tmp_path / 'out'}"], workdir)
    err = capsys.readouterr().err
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("offline", ["1", "0"])
@pytest.mark.parametrize("source", [["moe=olmoe_1b_7b"],
                                    ["moe.model=allenai/OLMoE-1B-7B-0924",
                                     "moe.revisions=[step5000-tokens20B]"]])
def test_unreachable_hub_fails_fast(workdir: Path, tmp_path: Path, grok_main,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture, offline: str,
                                    source: list[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # never resolves
    start = time.perf_counter()
    code = grok_main(["pathways", *source, "data.path=data.jsonl",
                      f"hydra.run.dir={tmp_path / 'out'}"], workdir)
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert code == 2
    assert "allenai/OLMoE-1B-7B-0924@step5000-tokens20B" in err and "moe.checkpoints" in err
    assert len(err.strip().splitlines()) == 1, err


def test_moe_olmoe_1b_7b_is_the_papers_checkpoints() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(cli.conf_dir()), version_base="1.3"):
        moe = compose("pathways", overrides=["moe=olmoe_1b_7b"]).moe
    assert moe.model == "allenai/OLMoE-1B-7B-0924"
    assert (moe.torch_dtype, moe.device_map) == ("bfloat16", "auto")
    # 10 checkpoints from step 5k to 1,100k; hub branch step<N>-tokens<T>B with 4,194,304
    # tokens per step, T in whole billions rounded down (step125000-tokens524B)
    steps = [int(re.fullmatch(r"step(\d+)-tokens\d+B", rev).group(1)) for rev in moe.revisions]
    assert len(steps) == 10 and steps[0] == 5000 and steps[-1] == 1_100_000
    assert steps == sorted(steps) and all(step % 5000 == 0 for step in steps)
    for step, revision in zip(steps, moe.revisions, strict=True):
        assert revision == f"step{step}-tokens{step * 4_194_304 // 10**9}B"
    assert "step125000-tokens524B" in moe.revisions


def test_from_run_folder(workdir: Path, tmp_path: Path, grok_main) -> None:
    from hydra import compose, initialize_config_dir

    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir=str(cli.conf_dir()), version_base="1.3"):
        run_cfg = compose("run", overrides=["task.p=5", "data_fraction=1.0"])
    n_train = len(build_task(run_cfg).train.y)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(run_cfg, run_dir / ".hydra" / "config.yaml")
    for seed, step in enumerate((10, 0, 200)):  # step_200 sorts after step_10 by number
        tiny_olmoe(seed).save_pretrained(run_dir / "checkpoints" / f"step_{step}")
    (run_dir / "metrics.csv").write_text(
        "step,train_loss,train_acc,test_loss,test_acc\n0,3,0.1,3,0.05\n10,1,0.5,2,0.25\n"
        "200,0.1,1.0,0.5,0.75\n")
    out = tmp_path / "out"
    code = grok_main(["pathways", f"moe.from_run={run_dir}", f"hydra.run.dir={out}"], workdir)
    assert code == 0
    rows = [r for r in read_rows(out / "pathways.csv") if r["group"] == "all"]
    assert [r["checkpoint"] for r in rows] == ["step_0", "step_10", "step_200"]
    assert [r["accuracy"] for r in rows] == ["0.05", "0.25", "0.75"]
    assert rows[0]["n_samples"] == str(n_train)
    assert json.loads((out / "pathways.json").read_text())["loss_tokens"] == "last"


def test_epsilon_auto_and_sampled_d_path_in_outputs(workdir: Path, tmp_path: Path, grok_main,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = grok_main(["pathways", f"moe.checkpoints=[{','.join(CHECKPOINTS)}]",
                      "data.path=data.jsonl", "memorization.epsilon=auto",
                      "memorization.delta=100", "pathway.max_pairs=6", "plots=false",
                      f"hydra.run.dir={out}"], workdir)
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((out / "pathways.json").read_text())
    # 5 samples per group: 20-25% of 5 is one sample, by its loss at the last checkpoint
    assert summary["memorization"]["memorized_fraction"] == {"code": 0.2, "web": 0.2}
    last = [r for r in read_rows(out / "pathways_samples.csv") if r["checkpoint"] == "ck2"]
    assert set(summary["memorization"]["epsilon"]) == {"code", "web"}
    for group, epsilon in summary["memorization"]["epsilon"].items():
        losses = [float(r["loss"]) for r in last if r["group"] == group]
        assert sum(loss <= epsilon for loss in losses) == 1
    # 10 samples, 45 pairs > 6: sampled, with a standard error, and the output says so
    rows = {r["group"]: r for r in read_rows(out / "pathways.csv") if r["checkpoint"] == "ck0"}
    assert rows["all"]["n_pairs"] == "6" and float(rows["all"]["d_path_se"]) > 0
    assert summary["d_path"]["pairs"].startswith("sampled")
    assert summary["d_path"]["max_relative_se"] > 0
    assert "D_path from sampled pairs" in err
    assert "Loading weights" not in err
