"""Checkpoint and snapshot files: written atomically, verified before any use.

`read_state` is the one reader of a `.pt` file (a run's last.pt, a step_<N>.pt snapshot) and
`verify` the one integrity check of every checkpoint or snapshot: `torch.load` does not look at
the zip CRCs torch writes, so a zeroed span would load as wrong weights. A snapshot folder
(olmoe's save_pretrained) carries a digest file of its own, written inside it before it is
renamed into place (`write_digests`). Whose run a checkpoint is (its identity keys) is
training's rule: grok_cli.training.checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from grok_cli.errors import GrokError
from grok_cli.io import atomic_write, write_json

DIGESTS = "grok.sha256.json"  # in a snapshot folder: {file name: sha256 of its bytes}


def write_digests(folder: Path) -> None:
    """Record the sha256 of every file of a snapshot folder about to be renamed into place."""
    write_json(folder / DIGESTS, {f.name: _sha256(f) for f in sorted(folder.iterdir())
                                  if f.is_file() and f.name != DIGESTS})


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify(path: Path) -> None:
    """GrokError naming the file unless the checkpoint or snapshot at `path` holds the bytes
    that were written: every zip entry's CRC of a .pt file, the recorded digests of a snapshot
    folder (a folder without a digest file, made by another tool, is taken as it is)."""
    if path.is_dir() and path.suffix != ".pt":
        digests_path = path / DIGESTS
        if not digests_path.is_file():
            return
        try:
            digests = json.loads(digests_path.read_text())
            bad = next((name for name, digest in digests.items()
                        if not (path / name).is_file() or _sha256(path / name) != digest), None)
        except (OSError, ValueError, AttributeError) as err:
            raise damaged(digests_path, f"{type(err).__name__}: {err}") from None
        if bad is not None:
            raise damaged(path / bad, f"its bytes differ from the digest {DIGESTS} "
                          "recorded when it was written: truncated or overwritten")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # zipfile raises several types for damaged headers
        raise damaged(path, f"not a whole checkpoint: {type(err).__name__}: {err}") from None
    if bad is not None:
        raise damaged(path, f"its entry {bad} fails its CRC check: bytes changed on disk")


def damaged(path: Path, reason: str) -> GrokError:
    return GrokError(f"{path} is damaged ({reason}); restore it from a copy, or delete it")


def read_state(path: Path) -> dict[str, Any]:
    """The dict a .pt checkpoint or snapshot holds, verified first."""
    import torch

    verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file it cannot read
        raise damaged(path, f"unreadable: {type(err).__name__}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise GrokError(f"{path} is not a grok checkpoint or snapshot (no model and step); "
                        "delete it, or resume=false to start over")
    return state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written whole or not at all: a kill mid-write leaves the old file intact."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)
