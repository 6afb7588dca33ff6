"""Fault injection, continued: run and sweep folders, faults mid-run (a full disk, a folder
removed or turned read-only), the continue line, `grok pathways` inputs and shared caches.
Each case ends in the numbers of an undamaged run or in one `error:` line (exit 2; exit 1 for
a fault of the machine) with the folder's files unchanged.
"""

# ruff: noqa: F811  (the fixtures imported from damaged.py are the tests' parameters)
from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY, grok_here
from damaged import (  # noqa: F401  pytest finds the fixtures by name
    ARGS,
    assert_refused,
    files,
    finished,
    grok_run,
    numbers,
    run,
    straight60,
    zero_span,
)

from grok_cli.runfolder.checkpoints import read_state
from grok_cli.training.signals import hydra_quoted

# ---------------------------------------------------------------- run and sweep folders


def sweep_of(run: Path) -> Path:
    """A sweep folder whose one job is the finished run, its table written."""
    sweep = run.parent / "sweep"
    shutil.copytree(run, sweep / "seed=0")
    assert grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={sweep}",
                     cwd=run.parent).returncode == 0
    return sweep


def test_a_run_in_a_sweeps_folder_or_inside_a_run_is_refused(run: Path) -> None:
    sweep = sweep_of(run)
    before, run_before = files(sweep), files(run)
    assert_refused(grok_here("run", *ARGS, f"hydra.run.dir={sweep}", cwd=run.parent),
                   "is a sweep's folder")
    assert_refused(grok_here("run", *ARGS, f"hydra.run.dir={run / 'inner'}", cwd=run.parent),
                   f"lies inside the run folder {run}")
    assert_refused(grok_here("sweep", *ARGS, f"hydra.sweep.dir={run}", cwd=run.parent),
                   f"it is the run folder {run}")
    assert files(sweep) == before and files(run) == run_before
    assert not (run / "inner").exists()


def test_a_run_left_in_a_sweeps_folder_is_named_not_counted(run: Path) -> None:
    """A run trained into the sweep's folder by an older version: summary.csv would list it
    alone, its jobs dropped."""
    sweep = sweep_of(run)
    shutil.copytree(run / ".hydra", sweep / ".hydra")
    shutil.copy(run / "metrics.csv", sweep / "metrics.csv")
    before = files(sweep)
    assert_refused(grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={sweep}",
                             cwd=run.parent), "holds a run of its own")
    assert files(sweep) == before


@pytest.mark.parametrize("text", ["[unclosed\n", "key: value\n"])
def test_summarize_only_stops_on_a_damaged_job_and_trains_nothing(run: Path, text: str) -> None:
    sweep = sweep_of(run)
    (sweep / "seed=0" / ".hydra" / "overrides.yaml").write_text(text)
    before = files(sweep)
    assert_refused(grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={sweep}",
                             cwd=run.parent), "overrides.yaml is damaged")
    assert files(sweep) == before  # no `defaults` job trained, the table as it was


def test_a_callback_error_stops_the_command_where_hydra_would_go_on(run: Path, monkeypatch,
                                                                   capsys) -> None:
    """Hydra's Callbacks._notify turns an exception into a warning and goes on (a sweep with a
    failed job would exit 0 beside a stale summary.csv): grok's callbacks exit instead."""
    from omegaconf import OmegaConf

    from grok_cli import sweep as sweep_module

    sweep = sweep_of(run)
    (sweep / "seed=0" / ".hydra" / "overrides.yaml").write_text("[unclosed\n")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    for code, needle in ((2, "overrides.yaml is damaged"), (1, "RuntimeError: disk gone")):
        with pytest.raises(SystemExit) as exited:
            try:
                sweep_module.SweepSummary().on_multirun_end(config)
            except Exception:  # noqa: S110 - what Hydra does with it
                pass
        assert exited.value.code == code
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: ") and needle in line

        def broken(sweep_dir):
            raise RuntimeError("disk gone")

        monkeypatch.setattr(sweep_module, "write_sweep_summary", broken)


def test_a_garbled_sweep_table_is_rebuilt_exactly(run: Path) -> None:
    sweep = sweep_of(run)
    table = (sweep / "summary.csv").read_text()
    (sweep / "summary.csv").write_text("garbage,\n\x00")
    assert grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={sweep}",
                     cwd=run.parent).returncode == 0
    assert (sweep / "summary.csv").read_text() == table


def test_a_damaged_job_summary_is_a_failed_row_not_unfinished(run: Path) -> None:
    sweep = sweep_of(run)
    (sweep / "seed=0" / "summary.json").write_text("{")
    result = grok_here("sweep", "sweep.summarize_only=true", f"hydra.sweep.dir={sweep}",
                       cwd=run.parent)
    assert result.returncode == 1 and "seed=0 (damaged:" in result.stderr
    with (sweep / "summary.csv").open(newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["status"] == "damaged" and "summary.json is damaged" in row["error"]


def test_a_stale_owner_file_does_not_block_the_run(run: Path, straight60) -> None:
    (run / ".grok.owner").write_text("pid 1 on host elsewhere\n")
    assert grok_run(run, "steps=60").returncode == 0
    assert numbers(run) == straight60


# ---------------------------------------------------------------- faults mid-run


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 128 KiB file system: the record, the metrics and the step-0 checkpoint (74 KB, no
    optimizer state yet) fit, the 198 KB one of step 20 does not; a failed summary does."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_a_failed_summary_and_a_clean_continue(tmpfs: Path,
                                                                       finished: Path) -> None:
    run = tmpfs / "run"
    args = [*TINY, f"hydra.run.dir={run}"]
    result = grok_here("run", *args, cwd=tmpfs.parent)
    line = assert_refused(result, "No space left on device", "the disk is full", code=1)
    assert "hydra.run.dir" not in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    assert not list(run.rglob("*.tmp"))  # the half checkpoint is gone
    assert read_state(run / "checkpoints" / "last.pt")["step"] == 0  # the last good one, whole
    subprocess.run(["mount", "-o", "remount,size=4m", str(tmpfs)], check=True)
    assert grok_here("run", *args, cwd=tmpfs.parent).returncode == 0
    assert numbers(run) == numbers(finished)


def test_a_folder_removed_mid_run_is_a_fault_not_a_bad_value(tmp_path: Path, monkeypatch
                                                            ) -> None:
    from grok_cli.training import trainer

    run = tmp_path / "run"
    write = trainer.RunLog.write

    def vanish(self, row):
        if row["step"] == 20:
            shutil.rmtree(run)
        write(self, row)

    monkeypatch.setattr(trainer.RunLog, "write", vanish)
    result = grok_here("run", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    line = assert_refused(result, "metrics.csv", "failed mid-run", "was removed", code=1)
    assert "hydra.run.dir" not in line and ".grok.owner" not in line


def test_a_folder_turned_read_only_mid_run_is_a_fault(tmp_path: Path, monkeypatch) -> None:
    """As root, permissions do not stop a write: a read-only bind mount over the run folder
    does (files opened before keep writing, as with a remount)."""
    from grok_cli.training import trainer

    run = tmp_path / "run"
    write = trainer.RunLog.write
    mounted = []

    def read_only(self, row):
        if row["step"] == 20:
            for command in (["mount", "--bind", str(run), str(run)],
                            ["mount", "-o", "remount,bind,ro", str(run)]):
                if subprocess.run(command, capture_output=True).returncode != 0:
                    pytest.skip("cannot bind-mount here")
                mounted.append(command)
        write(self, row)

    monkeypatch.setattr(trainer.RunLog, "write", read_only)
    try:
        result = grok_here("run", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(run)], check=False)
    line = assert_refused(result, "Read-only file system", "became read-only", code=1)
    assert "hydra.run.dir" not in line and ".grok.owner" not in line
    assert [int(r["step"]) for r in numbers(run)] == [0, 10]


# ---------------------------------------------------------------- the continue line


@pytest.mark.parametrize("name", ["with space", "alpha=1,seed=[2]", "it's", "back\\slash\\",
                                  "dollar$HOME"])
def test_the_continue_line_works_pasted_into_a_shell(name: str, tmp_path: Path) -> None:
    """The folder comes back whole through a real shell and Hydra's override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    folder = str(tmp_path / name)
    line = shlex.join([f"hydra.run.dir={hydra_quoted(folder)}"])
    echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {line}"], capture_output=True,
                            text=True, check=True).stdout.rstrip("\n")
    assert OverridesParser.create().parse_override(echoed).value() == folder


def test_an_interrupted_run_in_a_sweep_like_folder_continues_by_its_line(
        tmp_path: Path, finished: Path, monkeypatch) -> None:
    """Ctrl-C mid-run in a folder named as sweep jobs are (`=` and `,`) and with a space:
    the printed line, parsed by a real shell, continues to the undamaged run's numbers."""
    from grok_cli.training import trainer

    run = tmp_path / "job a=1,b=2"
    write = trainer.RunLog.write

    def interrupt(self, row):
        write(self, row)
        if row["step"] == 20:
            os.kill(os.getpid(), signal.SIGINT)  # noted; the loop stops at the next step

    monkeypatch.setattr(trainer.RunLog, "write", interrupt)
    # A terminal's Ctrl-C: a test worker may have SIGINT ignored, which a run keeps ignored.
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = grok_here("run", *ARGS, f"hydra.run.dir={hydra_quoted(str(run))}",
                           cwd=tmp_path)
    finally:
        signal.signal(signal.SIGINT, outer)
    assert result.returncode == 130, result.stderr
    monkeypatch.setattr(trainer.RunLog, "write", write)
    line = result.stderr.strip().splitlines()[-1]
    command = line.split("to continue: ", 1)[1]
    argv = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], capture_output=True,
                          text=True, check=True).stdout.split("\0")[:-1]
    assert argv[:2] == ["grok", "run"]
    assert grok_here(*argv[1:], cwd=tmp_path).returncode == 0
    assert numbers(run) == numbers(finished)


# ---------------------------------------------------------------- grok pathways inputs


@pytest.fixture
def moe_run(tmp_path: Path, run_cfg) -> Path:
    """A run folder as `grok run model=olmoe save_every=10` leaves it: step_<N>/ folders
    with their digests, its record and metrics."""
    from omegaconf import OmegaConf
    from test_pathways import tiny_olmoe

    from grok_cli.runfolder.checkpoints import write_digests

    run = tmp_path / "moe"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(run_cfg("task.p=5", "data_fraction=1.0"), run / ".hydra" / "config.yaml")
    for seed, step in enumerate((0, 10)):
        folder = run / "checkpoints" / f"step_{step}"
        tiny_olmoe(seed).save_pretrained(folder)
        write_digests(folder)
    (run / "metrics.csv").write_text("step,train_loss,train_acc,test_loss,test_acc\n"
                                     "0,3,0.1,3,0.05\n10,1,0.5,2,0.25\n")
    (tmp_path / "data.jsonl").write_text("".join(
        json.dumps({"id": f"s{i}", "input_ids": [2 + i, 3 + i, 4 + i]}) + "\n"
        for i in range(4)))
    return run


def pathways(run: Path, *args: str):
    return grok_here("pathways", *args, cwd=run.parent)


def test_pathways_runs_on_the_verified_snapshots(moe_run: Path) -> None:
    assert pathways(moe_run, f"moe.from_run={moe_run}",
                    f"hydra.run.dir={moe_run.parent / 'out'}").returncode == 0


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    lambda p: p.write_bytes(p.read_bytes()[:-4096] + bytes(4096)),
], ids=["truncated", "zeroed-tail"])
def test_pathways_refuses_a_damaged_safetensors_file(moe_run: Path, damage) -> None:
    weights = moe_run / "checkpoints" / "step_10" / "model.safetensors"
    damage(weights)
    assert_refused(pathways(moe_run, f"moe.from_run={moe_run}"), str(weights),
                   "bytes differ from the digest")
    # A folder another tool wrote has no digests: safetensors' own error, in one line.
    (weights.parent / "grok.sha256.json").unlink()
    weights.write_bytes(weights.read_bytes()[:100])
    assert_refused(pathways(moe_run, f"moe.checkpoints=[{weights.parent}]",
                            f"data.path={moe_run.parent / 'data.jsonl'}"), "cannot load")
    assert not (moe_run.parent / "outputs").exists()


# ---------------------------------------------------------------- shared caches


def test_a_damaged_token_cache_is_tokenized_again(run_cfg, tmp_path: Path, caplog) -> None:
    """The tokenized-text cache is shared by every run on the data: a zeroed span in it must
    not become other tokens."""
    from test_text import reviews, write_jsonl

    from grok_cli.tasks import build_task

    train = write_jsonl(tmp_path / "train.jsonl", reviews(60, seed=1))
    test = write_jsonl(tmp_path / "test.jsonl", reviews(20, seed=2))
    cfg = run_cfg("task=imdb", f"task.cache_dir={tmp_path / 'cache'}", "tokenizer=wordpiece",
                  f"task.data_files.train={train}", f"task.data_files.test={test}")
    first = build_task(cfg)
    (cached,) = (tmp_path / "cache" / "tokenized").glob("*.pt")
    zero_span(cached, 64)
    again = build_task(cfg)
    assert "fails its CRC check" in caplog.text and "tokenizing again" in caplog.text
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.x, again.test.x)
    assert torch.equal(first.train.y, again.train.y)
