"""Fault injection: a finished run's folder damaged as an adversary would, and faults mid-run.

For every case `grok` must give the numbers an undamaged run gives, or refuse in one `error:`
line (exit 2; exit 1 for a fault of the machine) with the folder's files unchanged. One tiny run
is trained per module and copied for each case; the continuations (steps=60) are held against a
straight 60-step run, row for row (every column but elapsed_s).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import TINY, grok_here

from grok_cli.errors import GrokError
from grok_cli.training.records import read_metrics
from grok_cli.training.signals import hydra_quoted

ARGS = [*TINY, "save_every=20"]  # snapshots step_0, step_20, step_40; last.pt at step 40
NUMBERS = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "l2_norm", "lr")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("damage")
    grok_here("run", *ARGS, f"hydra.run.dir={root / 'run'}", cwd=root, check=True)
    return root / "run"


@pytest.fixture(scope="module")
def straight60(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The rows of an undamaged, uninterrupted 60-step run."""
    root = tmp_path_factory.mktemp("straight")
    grok_here("run", *ARGS, "steps=60", f"hydra.run.dir={root / 'run'}", cwd=root, check=True)
    return numbers(root / "run")


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def numbers(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as handle:
        return [{key: row[key] for key in NUMBERS} for row in csv.DictReader(handle)]


def files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes but run.log's (each command logs there, a refused one too)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.log"}


def grok_run(run: Path, *extra: str):
    return grok_here("run", *ARGS, *extra, f"hydra.run.dir={run}", cwd=run.parent)


def assert_refused(result, *needles: str, code: int = 2) -> str:
    """One `error:` line (the last), no traceback; returns it."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == code, result.stderr
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    print(errors[0])  # pytest -rP shows each case's line
    return errors[0]


def refuses_unchanged(run: Path, damage, *extra: str, needles: tuple[str, ...] = ()) -> str:
    damage(run)
    before = files(run)
    line = assert_refused(grok_run(run, *extra), *needles)
    assert files(run) == before
    return line


def zero_span(path: Path, size: int = 4096) -> None:
    """Zero `size` bytes inside the data of the largest zip entry (a tensor's storage)."""
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.compress_size)
    data = bytearray(path.read_bytes())
    header = entry.header_offset
    name_len, extra_len = (int.from_bytes(data[header + i:header + i + 2], "little")
                           for i in (26, 28))
    start = header + 30 + name_len + extra_len + (entry.compress_size - size) // 2
    data[start:start + size] = bytes(size)
    path.write_bytes(bytes(data))


def edit_rows(run: Path, edit) -> None:
    path = run / "metrics.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


# ---------------------------------------------------------------- checkpoints (last.pt)


@pytest.mark.parametrize("damage, needle", [
    (lambda p: zero_span(p), "fails its CRC check"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not a whole checkpoint"),
    (lambda p: p.write_bytes(b""), "not a whole checkpoint"),
    (lambda p: p.write_bytes(bytes(range(256)) * 64), "not a whole checkpoint"),
    (lambda p: (p.unlink(), p.mkdir()), "not a whole checkpoint"),
], ids=["zeroed-4KB", "truncated", "empty", "garbage", "a-folder"])
def test_a_damaged_checkpoint_is_refused_before_use(run: Path, damage, needle: str) -> None:
    line = refuses_unchanged(run, lambda r: damage(r / "checkpoints" / "last.pt"), "steps=60",
                             needles=(needle,))
    assert str(run / "checkpoints" / "last.pt") in line


def test_torch_itself_loads_a_zeroed_checkpoint(run: Path) -> None:
    """Why the CRCs are checked: torch.load takes the damaged file without a word."""
    path = run / "checkpoints" / "last.pt"
    zero_span(path)
    torch.load(path, weights_only=True)
    assert zipfile.ZipFile(path).testzip() is not None


def test_another_runs_checkpoint_names_the_differing_keys(run: Path) -> None:
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["identity"]["seed"] = 1
    state["identity"]["model"]["hidden_size"] = 64
    torch.save(state, path)
    line = refuses_unchanged(run, lambda r: None, "steps=60")
    assert line.endswith("does not match this run: model.hidden_size: 64 in the checkpoint, "
                         "32 here; seed: 1 in the checkpoint, 0 here; use the same config, or "
                         "a new run folder")


def test_a_snapshot_copied_over_last_pt_is_refused(run: Path) -> None:
    shutil.copy(run / "checkpoints" / "step_20.pt", run / "checkpoints" / "last.pt")
    refuses_unchanged(run, lambda r: None, "steps=60", needles=("not a run's checkpoint",))


# ---------------------------------------------------------------- the folder's own record


def test_a_finished_run_without_checkpoint_is_not_trained_over(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")
    line = refuses_unchanged(run, lambda r: None, "alpha=10")
    assert "alpha: 3.0 in the run folder's record, 10 here" in line
    assert "resume=false starts this folder over" in line


def test_a_swapped_record_is_refused(run: Path) -> None:
    record = run / ".hydra" / "config.yaml"
    record.write_text(record.read_text().replace("alpha: 3.0", "alpha: 10.0"))
    refuses_unchanged(run, lambda r: None, "steps=60",
                      needles=("alpha: 10.0 in the run folder's record, 3.0 here",))


@pytest.mark.parametrize("text", ["model: [unclosed\n", "- a list\n", "\x00\x01 binary: {"])
def test_a_damaged_record_is_refused(run: Path, text: str) -> None:
    line = refuses_unchanged(run, lambda r: (r / ".hydra" / "config.yaml").write_text(text),
                             "steps=60", needles=("is damaged",))
    assert str(run / ".hydra" / "config.yaml") in line


def test_without_its_record_a_run_continues_exactly(run: Path, straight60) -> None:
    (run / ".hydra" / "config.yaml").unlink()  # the checkpoint still says whose it is
    assert grok_run(run, "steps=60").returncode == 0
    assert numbers(run) == straight60
    assert (run / ".hydra" / "config.yaml").is_file()


def test_a_completed_run_without_checkpoints_retrains_to_the_same_numbers(run: Path) -> None:
    before = numbers(run)
    shutil.rmtree(run / "checkpoints")
    assert grok_run(run).returncode == 0
    assert numbers(run) == before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["snapshots"] == ["checkpoints/step_0.pt", "checkpoints/step_20.pt",
                                    "checkpoints/step_40.pt"]


# ---------------------------------------------------------------- snapshots


def test_starting_over_removes_the_old_runs_snapshots(run: Path) -> None:
    assert grok_run(run, "resume=false", "save_every=30").returncode == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["snapshots"] == ["checkpoints/step_0.pt", "checkpoints/step_30.pt"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.pt", "step_0.pt", "step_30.pt"]


def test_a_stale_snapshot_past_the_checkpoint_is_removed(run: Path, straight60) -> None:
    (run / "checkpoints" / "step_50.pt").write_bytes(b"left by a killed attempt")
    assert grok_run(run, "steps=60").returncode == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["snapshots"] == [f"checkpoints/step_{n}.pt" for n in (0, 20, 40, 60)]
    assert numbers(run) == straight60


def fourier(run: Path, *extra: str):
    return grok_here("fourier", f"run_dir={run}", "plots=false", *extra, cwd=run.parent)


@pytest.mark.parametrize("damage, needle", [
    (zero_span, "fails its CRC check"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a whole checkpoint"),
], ids=["zeroed", "truncated"])
def test_fourier_refuses_a_damaged_snapshot_and_writes_nothing(run: Path, damage,
                                                               needle: str) -> None:
    damage(run / "checkpoints" / "step_20.pt")
    before = files(run)
    line = assert_refused(fourier(run), needle, str(run / "checkpoints" / "step_20.pt"))
    assert line and files(run) == before
    assert not (run.parent / "outputs").exists()


def test_fourier_refuses_another_runs_or_a_renamed_snapshot(run: Path) -> None:
    path = run / "checkpoints" / "step_20.pt"
    state = torch.load(path, weights_only=True)
    state["identity"]["seed"] = 7
    torch.save(state, path)
    assert_refused(fourier(run), "seed: 7 in the snapshot, 0 here")
    shutil.copy(run / "checkpoints" / "step_40.pt", path)
    assert_refused(fourier(run), "holds step 40, not the step its name says")
    assert not (run.parent / "outputs").exists()


def test_fourier_ignores_temporary_files_left_by_a_kill(run: Path, finished: Path) -> None:
    (run / "checkpoints" / ".step_60.pt.abc.tmp").write_bytes(b"half")
    (run / "checkpoints" / ".last.pt.xyz.tmp").write_bytes(b"half")
    assert fourier(run, f"out_dir={run.parent / 'a'}").returncode == 0
    assert fourier(finished, f"out_dir={run.parent / 'b'}").returncode == 0
    assert (run.parent / "a" / "fourier.csv").read_text().replace(str(run), "") == \
        (run.parent / "b" / "fourier.csv").read_text().replace(str(finished), "")


def test_fourier_and_cds_refuse_a_damaged_record_and_write_nothing(run: Path) -> None:
    (run / ".hydra" / "config.yaml").write_text("task: {name: modadd\n")
    for result in (fourier(run), grok_here("cds", f"sweep_dir={run}", cwd=run.parent)):
        assert_refused(result, str(run / ".hydra" / "config.yaml"), "is damaged")
    assert not (run.parent / "outputs").exists()


# ---------------------------------------------------------------- metrics.csv


def test_a_renamed_column_is_refused_on_resume(run: Path) -> None:
    line = refuses_unchanged(
        run, lambda r: edit_rows(r, lambda lines: [lines[0].replace("test_acc", "test_accuracy"),
                                                   *lines[1:]]),
        "steps=60")
    assert "missing: test_acc; not this run's: test_accuracy" in line


@pytest.mark.parametrize("edit", [
    lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],  # two rows swapped
    lambda lines: [*lines[:3], lines[2], *lines[3:]],  # a row written twice
    lambda lines: [lines[0], *[line.replace("\n", "\r\n") for line in lines[1:]]],  # CRLF
    lambda lines: ["\ufeff" + lines[0], *lines[1:]],  # a BOM from a spreadsheet
], ids=["reordered", "duplicated", "crlf", "bom"])
def test_a_losslessly_repairable_metrics_file_gives_exact_numbers(run: Path, straight60,
                                                                  edit, caplog) -> None:
    original = read_metrics(run / "metrics.csv")
    edit_rows(run, edit)
    assert read_metrics(run / "metrics.csv") == original
    assert grok_run(run, "steps=60").returncode == 0
    assert numbers(run) == straight60


def with_field(line: str, index: int, value: str) -> str:
    fields = line.rstrip("\r\n").split(",")
    fields[index] = value
    return ",".join(fields) + "\n"


@pytest.mark.parametrize("edit, needle", [
    (lambda lines: [*lines[:3], with_field(lines[2], 4, "0.5"), *lines[3:]],
     "step 10 has two different rows"),
    (lambda lines: [lines[0], *lines[2:]], "holds 3 rows before step 40"),
    (lambda lines: [lines[0]], "holds 0 rows before step 40"),
    (lambda lines: [], "is not a metrics file"),
    (lambda lines: [lines[0], lines[1].replace(",", ",x", 2), *lines[2:]], "line 2 is damaged"),
    (lambda lines: [lines[0].replace("lr", "step"), *lines[1:]], "is not a metrics file"),
], ids=["conflicting-duplicate", "first-row-deleted", "all-rows-deleted", "empty",
        "not-a-number", "a-name-twice"])
def test_a_damaged_metrics_file_is_refused_on_resume(run: Path, edit, needle) -> None:
    line = refuses_unchanged(run, lambda r: edit_rows(r, edit), "steps=60")
    assert str(run / "metrics.csv") in line
    if needle:
        assert needle in line


def set_value(run: Path, step: int, column: str, value: str) -> None:
    path = run / "metrics.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if int(row["step"]) == step:
            row[column] = value
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("column, value", [("test_acc", "nan"), ("train_acc", ""),
                                           ("test_acc", "1.5"), ("train_acc", "-0.1"),
                                           ("test_loss", "inf"), ("lr", "nan"),
                                           ("step", "-10")])
def test_an_impossible_value_is_refused_everywhere(run: Path, column: str, value: str) -> None:
    set_value(run, 10, column, value)
    with pytest.raises(GrokError, match="which a run never writes there|is damaged"):
        read_metrics(run / "metrics.csv")
    before = files(run)
    assert_refused(grok_run(run, "steps=60"), str(run / "metrics.csv"))
    assert_refused(grok_here("cds", f"sweep_dir={run}", cwd=run.parent), "metrics.csv")
    assert files(run) == before and not (run.parent / "outputs").exists()


def test_a_diverged_runs_last_row_may_be_non_finite(run: Path) -> None:
    set_value(run, 40, "test_loss", "nan")
    set_value(run, 40, "l2_norm", "inf")
    rows = read_metrics(run / "metrics.csv")
    assert math.isnan(rows[-1]["test_loss"]) and rows[-1]["l2_norm"] == math.inf


def test_a_torn_last_row_is_dropped(run: Path, straight60) -> None:
    path = run / "metrics.csv"
    path.write_text(path.read_text() + "50,1.2,0.")
    assert [r["step"] for r in read_metrics(path)] == [0, 10, 20, 30, 40]
    assert grok_run(run, "steps=60").returncode == 0
    assert numbers(run) == straight60


# ---------------------------------------------------------------- summary.json


@pytest.mark.parametrize("text", ["{\"status\": \"compl", "[1, 2]", ""])
def test_a_damaged_summary_is_rewritten_from_the_checkpoint(run: Path, text: str) -> None:
    expected = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(text)
    result = grok_run(run)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert f"{run / 'summary.json'} is damaged" in result.stderr
    summary = json.loads((run / "summary.json").read_text())
    for key in ("status", "memorization_step", "generalization_step", "best_test_acc",
                "converged_test_acc", "n_train", "n_test", "snapshots"):
        assert summary[key] == expected[key]
    assert {k: v for k, v in summary["final"].items() if k != "elapsed_s"} == \
        {k: v for k, v in expected["final"].items() if k != "elapsed_s"}


def test_cds_refuses_a_damaged_or_foreign_summary(run: Path, finished: Path) -> None:
    (run / "summary.json").write_text("[1, 2]")
    assert_refused(grok_here("cds", f"sweep_dir={run}", cwd=run.parent),
                   f"{run / 'summary.json'} is damaged")
    summary = json.loads((finished / "summary.json").read_text())
    summary["final"]["step"] = 30  # a summary of another (or an earlier) run
    (run / "summary.json").write_text(json.dumps(summary))
    assert_refused(grok_here("cds", f"sweep_dir={run}", cwd=run.parent),
                   "metrics.csv ends with step=40 but summary.json's final row has 30")
    assert not (run.parent / "outputs").exists()


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
    """A 100 KiB file system: the run's record and metrics fit, its 200 KB checkpoint not."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)],
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
    result = grok_here("run", *ARGS, f"hydra.run.dir={hydra_quoted(str(run))}", cwd=tmp_path)
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

    from grok_cli.training.checkpoint import write_digests

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
                   "bytes differ from those recorded")
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
