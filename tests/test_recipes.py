"""The design's recipes hold: a model, a task, an optimizer, a loss and a sampling choice are
each one new .py file plus its config file (tests/recipes/, not shipped), run through the real
`grok run`; and a key added with a default to a group file keeps older checkpoints resuming
(config.with_defaults)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY, grok_here, read_rows
from hydra import compose, initialize_config_dir

from grok_cli import config
from grok_cli.errors import GrokError
from grok_cli.training.checkpoint import load_checkpoint
from grok_cli.training.run import run_experiment

RECIPES = Path(__file__).parent / "recipes" / "conf"
SEARCH = f"hydra.searchpath=[file://{RECIPES}]"


def trained(run: Path) -> list[dict[str, str]]:
    rows = read_rows(run / "metrics.csv")
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]), rows
    assert float(rows[-1]["train_acc"]) > float(rows[0]["train_acc"]), rows
    return rows


SHORT = ["steps=60", "eval_every=20", "ckpt_every=60", "progress=log"]
SMALL_GPT = ["model.hidden_size=32", "model.num_heads=2"]


@pytest.mark.parametrize("choice", [
    ["model=concat_linear", "task.p=23", "task.train_split=0.75"],
    ["task=maxof", *SMALL_GPT],
    ["optimizer=adagrad", "task.p=23", "task.train_split=0.75", *SMALL_GPT],
])
def test_one_file_and_its_config_add_a_choice(tmp_path, choice):
    run = tmp_path / "run"
    grok_here("run", SEARCH, *choice, *SHORT, f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    trained(run)
    recorded = (run / ".hydra" / "config.yaml").read_text()
    assert f"name: {choice[0].split('=')[1]}" in recorded


MODADD = ["task.p=23", "task.train_split=0.75"]


def test_a_loss_is_one_function_and_its_config(tmp_path):
    """loss=smoothed trains, and is the loss the rows report: the same init as cross_entropy
    (the same accuracy), another loss."""
    runs = {loss: tmp_path / loss for loss in ("cross_entropy", "smoothed")}
    for loss, run in runs.items():
        grok_here("run", SEARCH, f"loss={loss}", *MODADD, *SMALL_GPT, *SHORT,
                  f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    plain, smoothed = read_rows(runs["cross_entropy"] / "metrics.csv"), trained(runs["smoothed"])
    assert smoothed[0]["train_acc"] == plain[0]["train_acc"]
    assert smoothed[0]["train_loss"] != plain[0]["train_loss"]
    assert "name: smoothed" in (runs["smoothed"] / ".hydra" / "config.yaml").read_text()


def test_a_sampling_choice_is_one_sampler_and_its_config(tmp_path):
    """sampling=cyclic trains, and its own state is in the checkpoint: 60 batches of 50 taken
    in order leave it at 60 * 50 mod n."""
    run = tmp_path / "run"
    grok_here("run", SEARCH, "sampling=cyclic", "batch_size=50", *MODADD, *SMALL_GPT, *SHORT,
              f"hydra.run.dir={run}", cwd=tmp_path, check=True)
    trained(run)
    n = json.loads((run / "summary.json").read_text())["n_train"]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert (state["step"], state["rng"]["cyclic_start"]) == (60, 60 * 50 % n)


def test_a_choice_no_file_holds_is_one_line(tmp_path):
    result = grok_here("run", "model=concat_linears", SEARCH, f"hydra.run.dir={tmp_path / 'r'}",
                       cwd=tmp_path)
    assert result.returncode == 2 and "concat_linear" in result.stderr  # did you mean


def test_a_key_added_with_a_default_keeps_old_checkpoints(tmp_path, monkeypatch, run_cfg):
    """A checkpoint written before `model.new_key` existed resumes a run at its default, and
    is refused for a run that sets another value: no list of added keys to edit."""
    run_experiment(run_cfg(*TINY, "steps=10", "eval_every=10"), tmp_path / "run")
    newer = tmp_path / "conf"
    shutil.copytree(config.conf_dir(), newer)
    with (newer / "model" / "gpt.yaml").open("a") as handle:
        handle.write("new_key: 1  # a key added after the checkpoint was written\n")
    monkeypatch.setattr(config, "conf_dir", lambda: newer)

    def later(*overrides: str):
        with initialize_config_dir(version_base="1.3", config_dir=str(newer)):
            return compose(config_name="run", overrides=[*TINY, "steps=20", *overrides])

    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    assert later().model.new_key == 1
    load_checkpoint(checkpoint, later())  # the same run
    with pytest.raises(GrokError, match="does not match this run: model.new_key: 1 in the "
                                        "checkpoint, 2 here"):
        load_checkpoint(checkpoint, later("model.new_key=2"))
