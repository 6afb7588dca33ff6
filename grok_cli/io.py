"""The one way grok writes a file: whole or not at all.

A reader (a resume, `grok cds` on a live sweep, a second process) must never see a half-written
checkpoint, summary, table or plot, and two processes writing into one folder must never share
a temporary name. So every writer goes through `atomic_write` (or `atomic_directory` for a
folder such as a `save_pretrained` snapshot): a unique temporary name in the target's own folder
(same filesystem, so the rename is atomic), flushed and fsynced, then `os.replace`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# mkstemp creates files 0600; the finished file gets the permissions a plain open() would.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any
                 ) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on a clean exit it replaces `path` in one step.

    On an exception the temporary file is removed and `path` keeps its old content.
    `mode` is "w" (text) or "wb" (bytes); `open_kwargs` go to `open` (e.g. `newline=""`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        # A failed write (a full disk, say) names the file it was for, not the temporary one
        # nor none; torch.save wraps the OSError of its writes in a RuntimeError.
        cause = next((e for e in (err, err.__cause__, err.__context__)
                      if isinstance(e, OSError)), None)
        if cause is not None and cause.filename in (None, tmp):
            raise OSError(cause.errno, cause.strerror, str(path)) from err
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """JSON with NaN allowed (a metric that is undefined stays visible as NaN)."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on a clean exit it becomes `path`.

    An existing `path` is moved aside first and deleted only after the new one is in place,
    so at every moment either the old or the new folder is complete under its name.
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_yaml(path: Path, advice: str) -> Any:
    """A YAML file grok wrote (a config record, a job's overrides); GrokError naming it, and
    `advice`, when it cannot be parsed: a hand edit or a torn copy is refused in one line."""
    from omegaconf import OmegaConf

    from grok_cli.errors import GrokError

    try:
        return OmegaConf.load(path)
    except Exception as err:  # yaml and OmegaConf raise several types
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise GrokError(f"{path} is damaged ({type(err).__name__}: {first_line}); "
                        f"{advice}") from None
