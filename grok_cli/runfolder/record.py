"""A run folder while one command writes it: its lock and its `.hydra/` record.

- One writer: a command holds the folder's lock (`.grok.lock`, an OS file lock the kernel
  releases when the process dies, even by SIGKILL) while it trains there; a second command on
  the same folder is refused, naming the holder (pid and host, from `.grok.owner`).
- `.hydra/` describes what was trained: Hydra's own writing is off (`hydra.output_subdir:
  null` in conf/run.yaml) and `RunFolderCallback` keeps the three files Hydra would have
  written until the run is accepted (lock held, config and checkpoint checked); a refused run
  leaves the folder's record as it was.
- The folder's identity: a folder that holds a run (metrics.csv or checkpoints/) is only
  trained on by a command of the config its `.hydra/config.yaml` records (`check_record`),
  with or without a checkpoint; `resume=false` is the explicit way to start over. A run never
  nests in a sweep's folder or another run's (`check_place`).
- A `grok run` refused before training removes the folder it created, so typos leave nothing
  in outputs/run/; so does a refused analysis (`discard_new_output`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from grok_cli.errors import GrokError, stops_on_error
from grok_cli.io import read_yaml, write_text
from grok_cli.runfolder import (
    CONFIG,
    LAST,
    LOCK_FILE,
    METRICS,
    OWNER_FILE,
    RECORD_DIR,
    SWEEP_SUMMARY,
    snapshots,
)
from grok_cli.runfolder.summary import remove_summary

# What a run refused before training may leave in a folder it created (all of it removed).
PRE_TRAINING_FILES = {"run.log", LOCK_FILE, OWNER_FILE}

# Filled by RunFolderCallback in the process that runs the job, read by RunFolder.
_records: dict[Path, dict[str, str]] = {}  # run folder -> {file in .hydra/: text}
_created: dict[Path, Path] = {}  # run folder -> the topmost folder this command created for it


def _key(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(path))


class RunFolderCallback(Callback):
    """Hydra callback (conf/run.yaml, hydra.callbacks.run_folder)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Before run_job creates the folder: note which folders this command creates. The
        # ${now:} in hydra.run.dir is cached on the config, so run_job resolves the same path.
        with contextlib.suppress(Exception):  # an unresolvable dir: nothing will be removed
            run_dir = _key(str(OmegaConf.select(config, "hydra.run.dir")))
            created = None
            for folder in (run_dir, *run_dir.parents):
                if folder.exists():
                    break
                created = folder
            if created is not None:
                _created[run_dir] = created

    @stops_on_error
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Exactly what Hydra's run_job writes to .hydra/ when output_subdir is set.
        _records[_key(config.hydra.runtime.output_dir)] = {
            "config.yaml": OmegaConf.to_yaml(without_hydra(config)),
            "hydra.yaml": OmegaConf.to_yaml(HydraConfig.instance().cfg),
            "overrides.yaml": OmegaConf.to_yaml(config.hydra.overrides.task),
        }


def without_hydra(config: DictConfig) -> DictConfig:
    """A job's config as its task function gets it (run_job's own copy, made the same way)."""
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def claimed(self) -> Iterator[RunFolder]:
        """Hold the folder for this process; GrokError, touching nothing, when another holds it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.path / LOCK_FILE, timeout=0)
            lock.acquire()
        except Timeout:
            raise GrokError(f"run folder {self.path} is in use by {self._holder()}: one run "
                            "writes a folder at a time; wait for it to end, stop it, or use "
                            "another run folder") from None
        except OSError as err:
            raise GrokError(f"run folder {self.path} cannot be written ({err.strerror}): pass "
                            "a folder you can write to as hydra.run.dir") from None
        owner = self.path / OWNER_FILE
        try:
            write_text(owner, f"pid {os.getpid()} on host {socket.gethostname()}\n")
            yield self
        finally:
            # A folder removed or made read-only mid-run: the run's own error says so; this
            # cleanup must not replace it.
            with contextlib.suppress(OSError):
                owner.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                lock.release()

    def _holder(self) -> str:
        try:
            return f"another process ({(self.path / OWNER_FILE).read_text().strip()})"
        except OSError:  # the holder has not written it yet
            return "another process"

    @property
    def has_record(self) -> bool:
        return (self.path / CONFIG).exists()

    def check_place(self) -> None:
        """A run folder is neither a sweep's folder (its jobs would drop out of summary.csv)
        nor inside another run's folder."""
        subfolders = [p for p in self.path.iterdir() if p.is_dir()] if self.path.is_dir() else []
        if (self.path / SWEEP_SUMMARY).exists() or any(
                (sub / METRICS).exists() for sub in subfolders):
            raise GrokError(f"hydra.run.dir={str(self.path)!r} is not allowed: it is a sweep's "
                            "folder (it holds summary.csv or job folders); a run needs a "
                            "folder of its own")
        holder = next((p for p in self.path.parents if (p / CONFIG).is_file()
                       and (p / METRICS).exists()), None)
        if holder is not None:
            raise GrokError(f"hydra.run.dir={str(self.path)!r} is not allowed: it lies inside "
                            f"the run folder {holder}; a run needs a folder of its own")

    def write_record(self, cfg: DictConfig) -> None:
        """Write .hydra/ for the run about to train here: Hydra's own three files when Hydra
        launched it, else (an in-process run) the resolved config alone."""
        files = _records.get(_key(self.path)) or {
            "config.yaml": OmegaConf.to_yaml(cfg, resolve=True)}
        (self.path / RECORD_DIR).mkdir(exist_ok=True)
        for name, text in files.items():
            write_text(self.path / RECORD_DIR / name, text)

    def restart_from(self, start: int) -> None:
        """Training restarts at step `start`: an earlier summary no longer describes the
        folder, nor a checkpoint or snapshot of a step this run has not reached (a run's
        snapshots are only ever its own)."""
        remove_summary(self.path)
        stale = [path for step, path in snapshots(self.path).items() if step >= start]
        if start == 0:
            stale.append(self.path / LAST)
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def discard_if_new(self, leftovers: set[str] = PRE_TRAINING_FILES) -> bool:
        """Remove the folder when this very command created it and it holds nothing but what
        a run refused before training writes (`leftovers`: its log); with the parents created
        for it."""
        top = _created.get(_key(self.path))
        if top is None or not self.path.is_dir():
            return False
        if any(p.name not in leftovers for p in self.path.iterdir()):
            return False
        shutil.rmtree(self.path)
        folder = self.path.parent
        while _key(folder) != _key(top.parent):  # e.g. outputs/run/<date>/ made for it
            try:
                folder.rmdir()  # only when empty: another run may have started beside it
            except OSError:
                break
            folder = folder.parent
        return True


def read_record(path: Path) -> DictConfig:
    """A run folder's .hydra/config.yaml; GrokError naming it when it cannot be read."""
    record = read_yaml(path, "restore it from a copy")
    if not isinstance(record, DictConfig):
        raise GrokError(f"{path} is damaged (not a mapping of config keys); restore it from "
                        "a copy")
    return record


def discard_new_output(output_dir: str | os.PathLike[str]) -> None:
    """After a refused analysis (`grok cds`, `fourier`, `pathways`): remove the output folder
    this command made (Hydra's log and .hydra/ only), so that a refusal writes nothing."""
    logs = {path.name for path in Path(output_dir).glob("*.log")}  # <job name>.log
    RunFolder(Path(output_dir)).discard_if_new({*logs, RECORD_DIR})
