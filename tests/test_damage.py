"""Fault injection: a finished run's folder damaged as an adversary would (checkpoints, the
folder's record, snapshots, metrics.csv, summary.json).

For every case `grok` must give the numbers an undamaged run gives, or refuse in one `error:`
line (exit 2) with the folder's files unchanged. One tiny run is trained per module and copied
for each case; the continuations (steps=60) are held against a straight 60-step run, row for
row (every column but elapsed_s).
"""

# ruff: noqa: F811  (the fixtures imported from damaged.py are the tests' parameters)
from __future__ import annotations

import csv
import json
import math
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import grok_here
from damaged import (  # noqa: F401  pytest finds the fixtures by name
    assert_refused,
    edit_rows,
    files,
    finished,
    grok_run,
    numbers,
    refuses_unchanged,
    run,
    straight60,
    zero_span,
)

from grok_cli.errors import GrokError
from grok_cli.runfolder.metrics import read_metrics

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
    (lambda lines: [*lines[:2], with_field(lines[2], 3, "2.5"), *lines[3:]],
     "are not those the checkpoint was taken after"),
    (lambda lines: [lines[0]], "holds 0 rows before step 40"),
    (lambda lines: [], "is not a metrics file"),
    (lambda lines: [lines[0], lines[1].replace(",", ",x", 2), *lines[2:]], "line 2 is damaged"),
    (lambda lines: [lines[0].replace("lr", "step"), *lines[1:]], "is not a metrics file"),
], ids=["conflicting-duplicate", "first-row-deleted", "a-value-edited", "all-rows-deleted", "empty",
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
    assert files(run) == before


def test_cds_refuses_a_nan_in_an_early_row(run: Path) -> None:
    """Where best_test_acc became NaN: the analysis reads through the same checks."""
    set_value(run, 10, "test_acc", "nan")
    assert_refused(grok_here("cds", f"sweep_dir={run}", cwd=run.parent),
                   f"{run / 'metrics.csv'}: step 10 has test_acc=nan")
    assert not (run.parent / "outputs").exists()


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
