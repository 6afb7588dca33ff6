"""Helpers of the fault-injection tests (test_damage.py, test_faults.py): one tiny finished run
per test module, copied for each case, and the checks that a case ends in the numbers of an
undamaged run or in one `error:` line with the folder's files unchanged."""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import TINY, grok_here

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


