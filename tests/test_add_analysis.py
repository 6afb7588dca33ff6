"""Adding an analysis costs one module and its config file, nothing else: a tiny analysis made
here (not shipped) is found by `grok --help`, runs through the real CLI, writes its output, and
a refused input writes nothing (cli.Task's refusal rule holds for it unasked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import grok_here

from grok_cli import cli, config, help

MODULE = '''
from omegaconf import DictConfig, OmegaConf

from grok_cli.analysis.output import output_dir, write_csv, write_json
from grok_cli.errors import check, report_user_errors
from grok_cli.runfolder import METRICS
from grok_cli.runfolder.metrics import read_metrics
from grok_cli.runfolder.runs import find_run_dirs


@report_user_errors
def main(cfg: DictConfig) -> None:
    runs = find_run_dirs([cfg.run_dir])
    check(bool(runs), "run_dir", cfg.run_dir, "a folder holding runs (with metrics.csv)")
    rows = [{"run": run.name, "evaluations": len(read_metrics(run / METRICS))} for run in runs]
    out = output_dir(cfg)
    write_csv(out / "tiny.csv", rows)
    write_json(out / "tiny.json", {"settings": OmegaConf.to_container(cfg)})
'''

CONF = '''# grok tiny: the number of evaluations of each run (run_dir=DIR)
_target_: tiny_analysis.main  # the command's code (package.module.function)
run_dir: ???  # a folder holding runs
out_dir: null  # where tiny.csv goes; null = the Hydra output dir

hydra:
  run:
    dir: outputs/tiny/${now:%Y-%m-%d}/${now:%H-%M-%S-%f}
  job:
    chdir: false
'''

METRICS = ("step,train_loss,train_acc,test_loss,test_acc,l2_norm,lr,elapsed_s\n"
           "0,4.6,0.01,4.6,0.01,30.0,0.001,0.1\n10,0.1,1.0,3.0,0.2,31.0,0.001,0.5\n")


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conf/ with tiny.yaml beside the shipped configs, and tiny_analysis.py on the path."""
    conf = tmp_path / "conf"
    shutil.copytree(config.conf_dir(), conf)
    (conf / "tiny.yaml").write_text(CONF)
    (tmp_path / "tiny_analysis.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in (cli, config, help):
        monkeypatch.setattr(module, "conf_dir", lambda: conf)
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text(METRICS)
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_one_module_and_one_config_file_make_a_command(tiny: Path) -> None:
    listed = grok_here("--help", cwd=tiny)
    assert "tiny       the number of evaluations of each run (run_dir=DIR)" in listed.stdout
    assert "run_dir=???" in grok_here("tiny", "--help", cwd=tiny).stdout

    out = tiny / "out"
    grok_here("tiny", f"run_dir={tiny.parent / 'runs'}", f"out_dir={out}", cwd=tiny, check=True)
    assert (out / "tiny.csv").read_text().splitlines() == ["run,evaluations", "a,2"]
    settings = json.loads((out / "tiny.json").read_text())["settings"]
    assert "_target_" not in settings and settings["run_dir"] == str(tiny.parent / "runs")


def test_a_refused_input_writes_nothing(tiny: Path) -> None:
    refused = grok_here("tiny", f"run_dir={tiny}", cwd=tiny)  # a folder without runs
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: run_dir=") and refused.stderr.count("\n") == 1
    assert list(tiny.iterdir()) == []  # not even the outputs/tiny/<date>/ folder Hydra made
