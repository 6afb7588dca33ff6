"""`grok run save_every=N` snapshots for every model, and `grok fourier` over run folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from grok_cli.analysis.fourier import command as fourier_command
from grok_cli.models import build_model
from grok_cli.tasks import build_task

RUN = ["experiment=nanda_p113", "task.p=23", "steps=60", "eval_every=10", "save_every=20",
       "progress=log"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_save_every_snapshots_then_fourier_writes_its_files(tmp_path, grok_main, capsys):
    run_dir = tmp_path / "run"
    assert grok_main(["run", *RUN, f"hydra.run.dir={run_dir}"], tmp_path) == 0
    snapshots = [f"checkpoints/step_{s}.pt" for s in (0, 20, 40, 60)]
    assert json.loads((run_dir / "summary.json").read_text())["snapshots"] == snapshots
    weights = torch.load(run_dir / snapshots[-1], weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert weights["step"] == 60
    assert weights["model"].keys() == last["model"].keys()
    assert all(torch.equal(v, last["model"][k]) for k, v in weights["model"].items())

    out = tmp_path / "out"
    capsys.readouterr()
    assert grok_main(["fourier", f"run_dir={run_dir}", f"out_dir={out}"], tmp_path) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"fourier.csv", "fourier.json",
                                                "fourier_progress.png", "fourier_spectrum.png"}
    rows = read_csv(out / "fourier.csv")
    assert [int(r["step"]) for r in rows] == [0, 20, 40, 60]
    # The same numbers as the trainer's own evaluation at those steps (accuracies exactly).
    metrics = {int(r["step"]): r for r in read_csv(run_dir / "metrics.csv")}
    for row in rows:
        logged = metrics[int(row["step"])]
        for key in ("train_acc", "test_acc"):
            assert float(row[key]) == float(logged[key])
        for key in ("train_loss", "test_loss"):
            assert float(row[key]) == pytest.approx(float(logged[key]), rel=1e-5)
        assert float(row["sum_sq_weights"]) == pytest.approx(float(logged["l2_norm"]) ** 2,
                                                             rel=1e-5)
    report = json.loads((out / "fourier.json").read_text())["runs"][0]
    assert report["chance_loss"] == pytest.approx(math.log(23))
    assert len(report["spectra"]["W_E"]) == 4 and len(report["spectra"]["W_E"][0]) == 11


def fake_run(folder: Path, run_cfg, *overrides: str) -> Path:
    """A run folder holding a config, a metrics.csv and an untrained model's step_0.pt."""
    other_task = any(o.startswith("task=") for o in overrides)
    base = [] if other_task else ["task=modadd", "task.p=11", "task.train_split=0.5"]
    cfg = run_cfg(*base, *overrides)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump(OmegaConf.to_container(cfg, resolve=False)))
    (folder / "metrics.csv").write_text("step,train_loss,train_acc,test_loss,test_acc\n")
    if cfg.task.name == "modadd" and cfg.task.op in ("add", "sub"):
        torch.manual_seed(0)
        model = build_model(cfg.model, build_task(cfg))
        (folder / "checkpoints").mkdir()
        torch.save({"model": model.state_dict(), "step": 0}, folder / "checkpoints/step_0.pt")
    return folder


def fourier_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    from grok_cli.cli import conf_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(config_name="fourier", overrides=list(overrides))


@pytest.mark.parametrize("model", [
    ["model=nanda", "task.format=nanda"],
    ["model=gpt", "model.hidden_size=16", "model.num_heads=2", "model.num_layers=2"],
    ["model=gpt2", "model.hidden_size=16", "model.num_heads=2", "task.format=power",
     "task.op=sub"]])
def test_each_model_is_read_on_the_grid(tmp_path, run_cfg, model):
    """The grid logits give the accuracy the model gives on its own split, and the MLP hook
    reads the answer position: the fast and the plain forward give the same activations."""
    folder = fake_run(tmp_path / "run", run_cfg, *model)
    run = fourier_command.load_run(folder, folder)
    net = build_model(run.cfg.model, run.task).eval()
    net.load_state_dict(torch.load(run.snapshots[0], weights_only=True)["model"])
    read = fourier_command.readout(net)
    logits, acts = fourier_command.run_grid(net, read, run.grid_x)
    assert torch.equal(run.grid_x[run.train_rows], run.task.train.x)
    assert torch.equal(run.grid_y[run.test_rows], run.task.test.y)
    with torch.no_grad():
        direct = net(run.task.test.x)
    assert torch.allclose(logits[run.test_rows], direct, atol=1e-5)
    assert acts.shape[0] == 11 * 11
    if hasattr(net, "fast"):
        net.fast = False
        assert torch.allclose(fourier_command.run_grid(net, read, run.grid_x)[1], acts,
                              atol=1e-5)
    fourier_command.main(fourier_cfg(f"run_dir={folder}", f"out_dir={tmp_path / 'out'}",
                                     "plots=false"))
    assert [r["step"] for r in read_csv(tmp_path / "out" / "fourier.csv")] == ["0"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["task.op=mul"], "task.op='mul' is not allowed: add or sub"),
    (["task=s5"], "task.name='s5' is not allowed: modadd"),
    (["model=lstm"], "model.name='lstm' is not allowed: a model with the read-out points "
                     "embed, unembed, blocks.0.mlp.hidden"),
    (["task.nonzero_b=true"], "task.nonzero_b=true is not allowed"),
])
def test_runs_it_cannot_analyse_get_one_line(tmp_path, run_cfg, capsys, overrides, message):
    folder = fake_run(tmp_path / "sweep" / "job0", run_cfg, *overrides)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        fourier_command.main(fourier_cfg(f"run_dir={folder.parent}", f"out_dir={out}"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    ([], "error: run_dir="),
    (["key_freqs=[0]"], "error: key_freqs="),
    (["key_threshold=2"], "error: key_threshold="),
])
def test_a_folder_without_runs_and_bad_settings_get_one_line(tmp_path, grok_main, capsys, args,
                                                             message):
    (tmp_path / "empty").mkdir()
    code = grok_main(["fourier", f"run_dir={tmp_path / 'empty'}", *args,
                      f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err
    if not args:
        assert "at least one run" in err


def test_batched_members_keep_their_own_step_snapshots(run_cfg, tmp_path):
    """launcher=batched with save_every: each member's step_<N>.pt holds its own weights."""
    from grok_cli.training.batched import train_batched

    cfgs = [run_cfg("experiment=nanda_p113", "task.p=11", "model.hidden_size=16",
                    "model.num_heads=2", "model.mlp_size=32", "steps=20", "eval_every=10",
                    "ckpt_every=10", "save_every=10", f"seed={seed}") for seed in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    assert train_batched(cfgs, dirs) == ["completed", "completed"]
    for run_dir in dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["snapshots"] == [f"checkpoints/step_{s}.pt" for s in (0, 10, 20)]
        snapshot = torch.load(run_dir / "checkpoints" / "step_20.pt", weights_only=True)
        last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert snapshot["step"] == 20
        assert snapshot["model"].keys() == last.keys()
        assert all(torch.equal(v, last[k]) for k, v in snapshot["model"].items())
    first, second = (torch.load(d / "checkpoints" / "step_20.pt", weights_only=True)["model"]
                     for d in dirs)
    assert not torch.equal(first["embed.W_E"], second["embed.W_E"])
