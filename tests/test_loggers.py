"""The `logger` config group: TensorBoard event files, W&B offline runs, clear errors."""

from __future__ import annotations

import builtins
import csv

import pytest
from conftest import TINY

from grok_cli.errors import GrokError
from grok_cli.training.loggers import build_loggers
from grok_cli.training.run import run_experiment


def test_tensorboard_event_files_hold_the_metrics_rows(run_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert run_experiment(run_cfg(*TINY, "logger=tensorboard"), run) == "completed"
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in the run folder"
    with (run / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    for tag in ("train_acc", "test_loss", "l2_norm"):
        scalars = acc.Scalars(tag)
        assert [s.step for s in scalars] == [int(r["step"]) for r in rows]
        assert [s.value for s in scalars] == pytest.approx([float(r[tag]) for r in rows])


def test_csv_logger_adds_no_tracker(run_cfg, tmp_path):
    assert build_loggers(run_cfg(), tmp_path) == []


def test_unknown_logger_name_is_a_user_error(run_cfg, tmp_path):
    cfg = run_cfg("logger.name=mlflow")
    with pytest.raises(GrokError, match="logger.name='mlflow'.*csv, tensorboard, wandb"):
        build_loggers(cfg, tmp_path)


def test_missing_wandb_says_how_to_install_it(run_cfg, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(GrokError, match=r"logger=wandb needs the wandb package: pip install"):
        build_loggers(run_cfg("logger=wandb"), tmp_path)


def test_wandb_offline_run_is_written_in_the_run_folder(run_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (logger,) = build_loggers(run_cfg("logger=wandb", "logger.tags=[test]"), tmp_path)
    try:
        logger.log({"step": 0, "train_acc": 0.5, "test_acc": 0.25})
        logger.log({"step": 10, "train_acc": 1.0, "test_acc": 0.5})
        assert logger.run.offline and logger.run.name == tmp_path.name
        assert list(logger.run.tags) == ["test"]
    finally:
        logger.close()
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_loggers_are_closed_when_training_fails(run_cfg, tmp_path, monkeypatch):
    from grok_cli.training import trainer

    closed = []

    class Recorder:
        def log(self, row):
            raise RuntimeError("tracker broke mid-run")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(trainer, "build_loggers", lambda cfg, run_dir: [Recorder()])
    cfg = run_cfg(*TINY, "device=cpu")
    with pytest.raises(RuntimeError, match="tracker broke"):
        trainer.train(cfg, tmp_path)
    assert closed == [True]
