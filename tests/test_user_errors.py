"""Every user mistake gets one `error:` line naming the key, the value and what is allowed, and
exit code 2 (README, exit codes); nothing already written is lost.

One table of the mistakes a new user makes. Most are found in-process the way the CLI finds
them (the static check of the command line, Hydra's composition, then the config's checks); a
few go through the real CLI for the exit code and the one-line format.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from conftest import grok, grok_here
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from grok_cli.cli import commands
from grok_cli.config import check_overrides, conf_dir, groups, top_keys, validate_run_config
from grok_cli.errors import user_mistake


def validate_run(cfg) -> None:
    """What `grok run` checks before its first step: the run keys, the task, model, optimizer."""
    from grok_cli.models import build_model
    from grok_cli.tasks import build_task
    from grok_cli.training.optim import build_optimizer

    validate_run_config(cfg)
    model = build_model(cfg.model, build_task(cfg))
    build_optimizer(cfg.optimizer, cfg.weight_decay, model)


def validate_sweep(cfg) -> None:
    from grok_cli.sweep import check_grid_folders

    check_grid_folders(cfg)


def validate_cds(cfg) -> None:
    from grok_cli.analysis.cds.command import read_params

    read_params(cfg)


def validate_fourier(cfg) -> None:
    from grok_cli.analysis.fourier.command import read_settings

    read_settings(cfg)


# grok pathways' value checks are its own (tests/test_pathways*.py); here only its keys.
VALIDATE = {"run": validate_run, "sweep": validate_sweep, "cds": validate_cds, "pathways": None,
            "fourier": validate_fourier}


def reported(command: str, overrides: list[str]) -> str:
    """The one line `grok <command> <overrides>` reports, found in-process."""
    config_name = commands()[command].config_name
    try:
        check_overrides(config_name, overrides)
        grid = [o for o in overrides if command == "sweep" and "," in o]
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            cfg = compose(config_name=config_name, return_hydra_config=command == "sweep",
                          overrides=[o for o in overrides if o not in grid])
        if grid:  # compose() knows no multirun: the grid goes where Hydra records it
            with open_dict(cfg):
                cfg.hydra.overrides.task = overrides
        if VALIDATE[command]:
            VALIDATE[command](cfg)
    except Exception as err:
        message = user_mistake(err, command, [*top_keys(config_name), *groups(config_name)])
        assert message is not None, f"{err!r} is not reported as a user mistake"
        return message
    raise AssertionError(f"grok {command} {' '.join(overrides)} was accepted")


# (command, overrides, the key=value the line must name, what it must say is allowed)
CASES = [
    # typos in keys and group names
    ("run", ["alpah=10"], "alpah=10", "did you mean alpha?"),
    ("run", ["+alpah=10"], "+alpah=10", "did you mean alpha?"),
    ("run", ["++alpah=10"], "++alpah=10", "did you mean alpha?"),
    ("run", ["tsk=imdb"], "tsk=imdb", "did you mean task?"),
    ("run", ["model.hidden_sise=32"], "model.hidden_sise=32", "did you mean hidden_size?"),
    ("run", ["task=imbd"], "task='imbd'", "did you mean imdb?"),
    ("run", ["optimizer=adamm"], "optimizer='adamm'", "adam, adamw, adamw_fast, rmsprop, sgd"),
    ("run", ["experiment=cds_modad"], "experiment='cds_modad'", "did you mean cds_modadd?"),
    ("run", ["logger=tensorbord"], "logger='tensorbord'", "did you mean tensorboard?"),
    ("run", ["tokenizer=bertt"], "tokenizer='bertt'", "auto, bert, wordpiece"),
    ("run", ["task=null"], "task='null'", "Available options in 'task'"),
    ("run", ["model=nope"], "model='nope'", "Available options in 'model'"),
    ("sweep", ["task=modadd,imbd"], "task='imbd'", "did you mean imdb?"),
    ("sweep", ["launcher=lokal"], "launcher='lokal'", "did you mean local?"),
    ("sweep", ["sweep=cds_modad_cpu"], "sweep='cds_modad_cpu'", "did you mean cds_modadd_cpu?"),
    ("cds", ["epsilno=0.8"], "epsilno=0.8", "did you mean epsilon?"),
    ("cds", ["task=imdb"], "task=imdb", "grok cds has no group or key 'task'"),
    ("pathways", ["moee.from_run=x"], "moee.from_run=x", "did you mean moe?"),
    # the command line's own syntax
    ("run", ["alpha=[1"], "'alpha=[1'", "write key=value"),
    ("pathways", ["moe.from_run=sweep/experiment=x,seed=0"], "'moe.from_run=sweep/experiment=x",
     "\"key='a=b,c'\""),
    ("run", ["seed=0,1"], "'seed=0,1'", "a comma list is a grid"),
    ("run", ["alpha=${nope}"], "alpha='${nope}'", "Interpolation key 'nope' not found"),
    ("run", ["+alpha=3"], "alpha", "An item is already at 'alpha'"),
    # wrong types and out-of-range values
    ("run", ["alpha=abc"], "alpha='abc'", "a number > 0"),
    ("run", ["alpha=0"], "alpha=0", "a number > 0"),
    ("run", ["steps=-5"], "steps=-5", "a positive integer"),
    ("run", ["steps=1.5"], "steps=1.5", "a positive integer"),
    ("run", ["steps=true"], "steps=true", "a positive integer"),
    ("run", ["data_fraction=1.5"], "data_fraction=1.5", "a fraction in (0, 1]"),
    ("run", ["data_fraction=0"], "data_fraction=0", "a fraction in (0, 1]"),
    ("run", ["steps=0"], "steps=0", "a positive integer"),
    ("run", ["train_size=0"], "train_size=0", "a positive integer"),
    ("run", ["train_size=100000"], "train_size=100000", "the training split's size (618)"),
    ("run", ["seed=abc"], "seed='abc'", "an integer"),
    ("run", ["batch_size=0"], "batch_size=0", "null (full batch) or a positive integer"),
    ("run", ["ckpt_every=15"], "ckpt_every=15", "a multiple of eval_every (10)"),
    ("run", ["save_every=15"], "save_every=15", "a multiple of eval_every (10)"),
    ("run", ["thresholds.generalize=1.5"], "thresholds.generalize=1.5", "an accuracy in (0, 1]"),
    ("run", ["thresholds.memorize=abc"], "thresholds.memorize='abc'", "an accuracy in (0, 1]"),
    ("run", ["device=gpu"], "device='gpu'", "auto, cpu, cuda, cuda:N or mps"),
    ("run", ["resume=yes"], "resume='yes'", "or false"),
    ("run", ["progress=quiet"], "progress='quiet'", "one of auto, bar, log"),
    ("run", ["threads=0"], "threads=0", "auto or a positive integer"),
    ("run", ["threads=many"], "threads='many'", "auto or a positive integer"),
    ("run", ["precision=fp16"], "precision='fp16'", "one of fp32, bf16"),
    ("run", ["compile=maybe"], "compile='maybe'", "true or false"),
    ("run", ["flush_denormal=1"], "flush_denormal=1", "true or false"),
    ("run", ["task.p=100"], "task.p=100", "a prime number >= 3"),
    ("run", ["task.p=2"], "task.p=2", "a prime number >= 3"),
    ("run", ["task.op=pow"], "task.op='pow'", "one of add, sub, mul, div"),
    ("run", ["task=modmix", "+task.groups.pow.fraction=0.5"], "task.groups='pow'",
     "one of add, sub, mul, div"),
    ("run", ["task=modmix", "task.groups.mul.fraction=1.5"], "task.groups.mul.fraction=1.5",
     "a training fraction in (0, 1]"),
    ("run", ["task.train_split=1"], "task.train_split=1", "strictly between 0 and 1"),
    ("run", ["model.num_heads=3"], "model.num_heads=3", "a positive divisor of model.hidden_size"),
    ("run", ["model=lstm", "model.hidden_size=0"], "model.hidden_size=0", "a positive integer"),
    ("run", ["optimizer.lr=-1"], "optimizer.lr=-1", "a positive number"),
    ("run", ["optimizer.lr=abc"], "optimizer.lr='abc'", "a positive number"),
    ("run", ["weight_decay=-1"], "weight_decay=-1", "a number >= 0"),
    ("run", ["model.hidden_size=true"], "model.hidden_size=true", "a positive integer"),
    ("run", ["model.dropout=1.0"], "model.dropout=1.0", "a probability in [0, 1)"),
    ("run", ["model=olmoe", "model.num_experts_per_tok=9"], "model.num_experts_per_tok=9",
     "an integer from 1 to model.num_experts (8)"),
    ("run", ["hydra.run.dir="], "hydra.run.dir=''", "a folder path"),
    ("cds", ["epsilon=2"], "epsilon=2", "an accuracy in (0, 1]"),
    ("run", ["optimizer.betas=0.9"], "optimizer.betas=0.9", "two numbers"),
    ("run", ["optimizer.warmup_steps=10", "optimizer.decay_steps=10"], "optimizer.decay_steps=10",
     "null (constant lr) or an integer > optimizer.warmup_steps (10)"),
    ("run", ["optimizer.decay_steps=1.5"], "optimizer.decay_steps=1.5", "an integer >"),
    ("run", ["optimizer.min_lr=0.01"], "optimizer.min_lr=0.01",
     "a number from 0 to optimizer.lr (0.002)"),
    ("run", ["optimizer.min_lr=-1"], "optimizer.min_lr=-1", "a number from 0"),
    ("cds", ["epsilon=true"], "epsilon=true", "an accuracy in (0, 1]"),
    ("cds", ["plots=maybe"], "plots='maybe'", "true or false"),
    ("cds", ["threads=0"], "threads=0", "auto or a positive integer"),
    ("fourier", ["threads=many"], "threads='many'", "auto or a positive integer"),
    # a grid whose jobs would share one folder
    ("sweep", ["eval_batch_size=1024,8192"], "eval_batch_size=1024,8192", "share one folder"),
    ("sweep", ["logger=csv,tensorboard"], "logger=csv,tensorboard", "share one folder"),
    ("sweep", ["threads=1,2"], "threads=1,2", "share one folder"),
]


@pytest.mark.parametrize(("command", "overrides", "named", "allowed"), CASES)
def test_a_mistake_is_one_line_naming_the_key_value_and_what_is_allowed(
        command, overrides, named, allowed):
    message = reported(command, overrides)
    assert named in message and allowed in message, message
    assert "\n" not in message


def test_missing_or_misplaced_data_files(run_cfg, tmp_path):
    from grok_cli.errors import GrokError
    from grok_cli.tasks import build_task

    for path, allowed in ((tmp_path / "missing.jsonl", "an existing file"),
                          (tmp_path, "a .json, .jsonl, .csv or .parquet file")):
        cfg = run_cfg("task=imdb", f"task.data_files.train={path}", "tokenizer=wordpiece",
                      f"task.cache_dir={tmp_path / 'cache'}")
        with pytest.raises(GrokError, match=f"task.data_files.train='{path}' is not allowed: "
                                            f"{allowed}"):
            build_task(cfg)


def test_an_unreadable_data_file_prints_only_the_error(run_cfg, tmp_path, capfd):
    from grok_cli.errors import GrokError
    from grok_cli.tasks import build_task

    garbage = tmp_path / "train.jsonl"
    garbage.write_bytes(b"\x00\x01 not json")
    bad_csv = tmp_path / "train.csv"  # a quote that never closes
    bad_csv.write_text('text,label\n"a,1\nb,2\n')
    for path, says in ((garbage, "could not be read as jsonl: "),
                       (bad_csv, "could not be read as csv: ParserError: Error tokenizing data")):
        with pytest.raises(GrokError, match=f"task.data_files.train='{path}' {says}") as err:
            build_task(run_cfg("task=imdb", f"task.data_files.train={path}",
                               "tokenizer=wordpiece", f"task.cache_dir={tmp_path / 'cache'}"))
        # the parser's own words, not datasets' wrapper ("An error occurred while generating")
        assert "DatasetGenerationError" not in str(err.value)
    assert capfd.readouterr().err == ""


# ------------------------------------------------------------------ through the real CLI


@contextlib.contextmanager
def read_only(folder: Path):
    """A folder nobody may write into; root ignores permissions, so it gets `chattr +i`."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i is not available")
    try:
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cli_key_typo_and_a_file_as_run_folder(tmp_path):
    line = one_error_line(grok("run", "alpah=10", cwd=tmp_path))
    assert "alpah=10 is not allowed" in line and "did you mean alpha?" in line
    afile = tmp_path / "afile"
    afile.write_text("precious")
    line = one_error_line(grok_here("run", f"hydra.run.dir={afile}", cwd=tmp_path))
    assert f"hydra.run.dir='{afile}' is not allowed" in line
    assert afile.read_text() == "precious"
    assert not (tmp_path / "outputs").exists()


def test_cli_read_only_run_folder_is_refused_and_kept(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("step\n10\n")
    with read_only(run_dir):
        line = one_error_line(grok_here("run", "steps=1", f"hydra.run.dir={run_dir}", cwd=tmp_path))
    assert f"hydra.run.dir='{run_dir}' is not allowed: cannot create or write" in line
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.csv"]
    assert (run_dir / "metrics.csv").read_text() == "step\n10\n"


def test_cli_grid_over_an_excluded_key_runs_no_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    line = one_error_line(grok_here("sweep", "eval_batch_size=1024,8192", "steps=1",
                               f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path))
    assert "eval_batch_size=1024,8192 is not allowed" in line
    assert not sweep_dir.exists()


def test_cli_foreign_folder_for_pathways(tmp_path):
    """(grok cds on an empty folder: tests/test_cds.py.)"""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a run")
    line = one_error_line(grok_here("pathways", f"moe.from_run={foreign}", cwd=tmp_path))
    assert f"moe.from_run='{foreign}' is not allowed" in line
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_hydra_full_error_shows_the_traceback(monkeypatch):
    """HYDRA_FULL_ERROR=1 (for a bug report): the mistake is raised, not put in one line."""
    from grok_cli import cli

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match="alpah") as raised:
        cli.main(["run", "+alpah=10"])
    assert not isinstance(raised.value, SystemExit)


def test_cfg_prints_a_sweeps_job_config_and_refuses_grids(tmp_path):
    """`--cfg job` shows what a sweep's jobs get (Hydra refuses --cfg beside --multirun, which
    `grok sweep` adds): a preset's values print; a comma list or -m is one line, exit 2."""
    shown = grok_here("sweep", "sweep=phase_lr_wd", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "steps: 3000" in shown.stdout.splitlines()  # conf/sweep/phase_lr_wd.yaml's
    for args, words in ((["sweep", "seed=0,1", "--cfg", "job"], "with --cfg/--info"),
                        (["run", "-m", "seed=0,1", "--cfg", "job"], "cannot be combined")):
        refused = grok_here(*args, cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1 and words in refused.stderr, refused.stderr
    assert list(tmp_path.iterdir()) == []  # printing a config writes nothing
