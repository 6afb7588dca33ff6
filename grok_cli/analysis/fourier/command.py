"""`grok fourier run_dir=RUN`: Fourier progress measures of modular-addition runs, per snapshot.

Flow: find the runs under run_dir -> check each (task modadd, op add/sub, a model with the
read-out points it needs (models/base.py: embed, unembed, blocks.0.mlp.hidden), snapshots or a
last checkpoint) before anything is written -> per run: rebuild the task from its
.hydra/config.yaml, run every snapshot on the full p × p grid (logits and the first MLP
layer's hidden activation at the answer position), find the key frequencies at the last
snapshot, then the measures of every snapshot (measures.py) -> fourier.csv, fourier.json, PNGs.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from grok_cli.analysis.fourier import measures as fourier
from grok_cli.analysis.output import output_dir, write_csv, write_json
from grok_cli.errors import GrokError, check, is_number, report_user_errors
from grok_cli.models import build_model
from grok_cli.models.base import GrokModel
from grok_cli.runfolder import last_checkpoint, snapshots
from grok_cli.runfolder.checkpoints import read_state
from grok_cli.runfolder.metrics import first_step_reaching
from grok_cli.runfolder.runs import Run, find_run_dirs, metric_arrays
from grok_cli.tasks import TaskData, build_task
from grok_cli.tasks.modadd import equations
from grok_cli.threads import apply_threads, check_threads
from grok_cli.training.checkpoint import IDENTITY_KEYS, check_identity
from grok_cli.training.device import resolve_device

log = logging.getLogger(__name__)

# The named read-out points it reads (models/base.py): no model is known here by its name.
POINTS = ("embed", "unembed", "blocks.0.mlp.hidden")
OPS = {"add": 1, "sub": -1}  # op -> the sign of b in the circuit's a ± b
COLUMNS = ["run", "step", "train_loss", "train_acc", "test_loss", "test_acc", "restricted_loss",
           "excluded_loss", "gini_W_E", "gini_W_U", "key_share", "sum_sq_weights"]


@dataclass
class Settings:
    key_freqs: list[int] | None  # given by the user, else found at each run's last snapshot
    key_threshold: float
    device: torch.device
    plots: bool
    threads: int | str  # `threads=`: auto or N


@dataclass
class RunInput:
    """One run, checked: its config, task on the full grid and snapshots in step order."""

    path: Path
    name: str  # relative to run_dir ("." for run_dir itself)
    cfg: DictConfig
    p: int
    sign: int
    grid_x: torch.Tensor  # [p², T] every input a, b (row a·p + b) in the run's format
    grid_y: torch.Tensor  # [p²] the answers
    train_rows: torch.Tensor  # grid rows of the training split
    test_rows: torch.Tensor
    task: TaskData
    snapshots: list[Path]  # in step order


@dataclass
class Measured:
    row: dict[str, Any]
    spectra: dict[str, list[float]]  # W_E, W_U: norm per frequency 1 … K


# ---------------------------------------------------------------- settings and runs


def read_settings(cfg: DictConfig) -> Settings:
    key_freqs = cfg.key_freqs
    if key_freqs is not None:
        key_freqs = list(OmegaConf.to_container(key_freqs)) if OmegaConf.is_list(key_freqs) \
            else key_freqs
        check(isinstance(key_freqs, list) and len(key_freqs) > 0
              and all(isinstance(k, int) and k > 0 for k in key_freqs), "key_freqs",
              key_freqs, "null (found at the last snapshot) or a list of frequencies >= 1")
    check(is_number(cfg.key_threshold) and 0 < cfg.key_threshold < 1, "key_threshold",
          cfg.key_threshold, "a share strictly between 0 and 1")
    check(isinstance(cfg.plots, bool), "plots", cfg.plots, "true or false")
    device = resolve_device(str(cfg.device))  # refused in one line when it is not there
    check_threads(cfg.threads)
    return Settings(key_freqs, float(cfg.key_threshold), device,
                    cfg.plots, cfg.threads)


def find_runs(cfg: DictConfig) -> tuple[Path, list[Path]]:
    value = cfg.get("run_dir")
    if OmegaConf.is_missing(cfg, "run_dir") or value in (None, ""):
        raise GrokError("run_dir is required: grok fourier run_dir=RUN (a run folder, or a "
                        "sweep folder holding runs)")
    root = Path(str(value))
    check(root.is_dir(), "run_dir", str(value), "an existing run folder or sweep folder")
    runs = find_run_dirs([root])
    check(bool(runs), "run_dir", str(value),
          "a folder holding at least one run (a folder with metrics.csv)")
    return root.resolve(), runs


def load_run(path: Path, root: Path) -> RunInput:
    """The run checked and its grid built; GrokError (one line naming the run) when it cannot
    be analysed."""
    name = str(path.relative_to(root)) if path != root else "."
    where = f" (run {path})"
    run = Run.load(path)
    if run.damage is not None:
        raise GrokError(run.damage)
    if not run.config:
        raise GrokError(f"run {path} has no .hydra/config.yaml: the task cannot be rebuilt")
    cfg = OmegaConf.create(run.config)
    task = cfg.get("task", {})
    check(task.get("name") == "modadd", "task.name", task.get("name"),
          f"modadd (with op add or sub): the Fourier circuit is defined for it{where}")
    check(task.get("op") in OPS, "task.op", task.get("op"),
          f"add or sub: the Fourier circuit is defined for them{where}")
    check(not task.get("nonzero_b", False), "task.nonzero_b", True,
          f"false: the analysis needs the full p × p grid{where}")
    snapshots = find_snapshots(path)
    p, fmt = int(task.p), task.get("format", "cds")
    seqs = equations(p, task.op, fmt)
    data = build_task(cfg, "cpu")
    has = build_model(cfg.model, data).points()
    check(all(point in has for point in POINTS), "model.name", cfg.model.name,
          f"a model with the read-out points {', '.join(POINTS)} (models/base.py; this one "
          f"has {', '.join(has) or 'none'}){where}")
    grid_x = seqs[:, :-1]
    return RunInput(path, name, cfg, p, OPS[task.op], grid_x, seqs[:, -1],
                    grid_rows(data.train.x, p, fmt), grid_rows(data.test.x, p, fmt), data,
                    snapshots)


def grid_rows(x: torch.Tensor, p: int, fmt: str) -> torch.Tensor:
    """The grid row a·p + b of each input (b is token 1 in `a b =`, token 2 otherwise)."""
    return x[:, 0] * p + x[:, 1 if fmt == "nanda" else 2]


def find_snapshots(path: Path) -> list[Path]:
    """checkpoints/step_<N>.pt in step order, else checkpoints/last.pt alone."""
    found = [f for f in snapshots(path).values() if f.suffix == ".pt"]
    if found:
        return found
    last = last_checkpoint(path)
    if not last.is_file():
        raise GrokError(f"run {path} has no checkpoints/step_<N>.pt snapshots (grok run "
                        "save_every=N) nor checkpoints/last.pt: nothing to analyse")
    return [last]


def load_state(path: Path, cfg: DictConfig) -> tuple[int, dict[str, torch.Tensor]]:
    """(step, model state_dict) of a snapshot or checkpoint, verified (checkpoint.read_state)
    and refused unless it is this run's: its identity keys and, for step_<N>.pt, its step."""
    state = read_state(path)
    if "identity" in state:  # snapshots written before they recorded it are taken as they are
        # The precision is left out: it depends on the device, this machine's or the run's.
        check_identity(state["identity"], cfg, path, where="snapshot",
                       keys=tuple(k for k in IDENTITY_KEYS if k != "precision"))
    if path.stem.startswith("step_") and path.stem != f"step_{state['step']}":
        raise GrokError(f"snapshot {path} holds step {state['step']}, not the step its name "
                        "says: it was renamed or copied; restore the run's own snapshots")
    return int(state["step"]), state["model"]


# ---------------------------------------------------------------- reading a model


@dataclass
class Readout:
    W_E: torch.Tensor  # [V, d]: rows 0..p-1 are the residues in every format
    W_U: torch.Tensor  # [d, C]: columns 0..p-1 are the residue answers
    model: GrokModel  # whose blocks.0.mlp.hidden is the MLP hidden activation


def readout(model: GrokModel) -> Readout:
    """The model's embedding, unembedding and first MLP, by their read-out names."""
    return Readout(model.weight("embed"), model.weight("unembed"), model)


@torch.no_grad()
def run_grid(model: nn.Module, read: Readout, grid_x: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [p², C] and MLP activations [p², m] at the answer (last) position over the whole
    grid, in one forward."""
    with read.model.capture(POINTS[2]) as seen:
        logits = model(grid_x).float()
    hidden = seen[-1]
    return logits, hidden[:, -1] if hidden.dim() == 3 else hidden


# ---------------------------------------------------------------- the measures


def measure(run: RunInput, step: int, model: nn.Module, read: Readout,
            directions: torch.Tensor, key_freqs: list[int]) -> Measured:
    device = next(model.parameters()).device
    logits, acts = run_grid(model, read, run.grid_x.to(device))
    logits, acts = logits.cpu(), acts.cpu()
    y, p = run.grid_y, run.p
    residue_logits = logits[:, :p]  # the circuit's answers (cds format has more classes)
    row: dict[str, Any] = {"run": run.name, "step": step}
    for split, rows in (("train", run.train_rows), ("test", run.test_rows)):
        row[f"{split}_loss"] = fourier.mean_cross_entropy(logits[rows], y[rows])
        row[f"{split}_acc"] = int((logits[rows].argmax(-1) == y[rows]).sum()) / len(rows)
    row["restricted_loss"] = fourier.restricted_loss(residue_logits, y, directions)
    row["excluded_loss"] = fourier.excluded_loss(residue_logits, y, directions, run.train_rows)
    spectra = {"W_E": fourier.spectrum(read.W_E.detach().cpu()[:p]),
               "W_U": fourier.spectrum(read.W_U.detach().cpu()[:, :p].T)}
    row["gini_W_E"], row["gini_W_U"] = (fourier.gini(s) for s in spectra.values())
    row["key_share"] = fourier.key_share(acts.view(p, p, -1), key_freqs)
    row["sum_sq_weights"] = float(sum(w.detach().double().pow(2).sum()
                                      for w in model.parameters()))
    return Measured(row, {k: v.tolist() for k, v in spectra.items()})


def analyse(run: RunInput, settings: Settings) -> dict[str, Any]:
    """Every snapshot's measures, with the key frequencies of the last (or the user's)."""
    began = time.perf_counter()
    model = build_model(run.cfg.model, run.task).to(settings.device).eval()
    read = readout(model)

    def load(snapshot: Path) -> int:
        step, weights = load_state(snapshot, run.cfg)
        try:
            model.load_state_dict(weights)
        except RuntimeError as err:  # another model's weights: names or shapes differ
            raise GrokError(f"snapshot {snapshot} does not fit the model of "
                            f"{run.path / '.hydra' / 'config.yaml'} "
                            f"({str(err).splitlines()[0]}); it belongs to another run") from None
        return step

    last_step = load(run.snapshots[-1])
    found = fourier.key_frequencies(
        run_grid(model, read, run.grid_x.to(settings.device))[1].cpu().view(run.p, run.p, -1),
        settings.key_threshold)
    key_freqs = settings.key_freqs or found.freqs
    check(max(key_freqs, default=0) <= (run.p - 1) // 2, "key_freqs", key_freqs,
          f"frequencies 1 … {(run.p - 1) // 2} for p={run.p}")
    directions = fourier.circuit_directions(run.p, key_freqs, run.sign)
    measured = [measure(run, load(s), model, read, directions, key_freqs)
                for s in run.snapshots]
    elapsed = time.perf_counter() - began
    log.info("%s: %d snapshot(s) in %.1f s; key frequencies %s", run.name, len(measured),
             elapsed, key_freqs)
    return {"run": run, "measured": measured, "key_freqs": key_freqs, "found": found,
            "last_step": last_step, "elapsed_s": elapsed}


def phase_steps(run: RunInput) -> dict[str, int | None]:
    """The first evaluated steps with train_acc >= thresholds.memorize and test_acc >=
    thresholds.generalize, from metrics.csv (a run still training has no summary yet)."""
    info = Run.load(run.path)
    try:
        metrics = metric_arrays(run.path)
    except ValueError:
        return {"memorization_step": None, "generalization_step": None}

    steps = metrics["step"]
    return {"memorization_step": first_step_reaching(steps, metrics["train_acc"],
                                                     info.memorize_threshold),
            "generalization_step": first_step_reaching(steps, metrics["test_acc"],
                                                       info.generalize_threshold)}


def run_report(result: dict[str, Any], settings: Settings) -> dict[str, Any]:
    run, found, measured = result["run"], result["found"], result["measured"]
    return {
        "run": run.name, "path": str(run.path), "model": run.cfg.model.name, "p": run.p,
        "op": run.cfg.task.op, "snapshots": len(measured),
        "key_frequencies": result["key_freqs"],
        "key_frequencies_from": "key_freqs setting" if settings.key_freqs
        else f"MLP neurons at the last snapshot (step {result['last_step']})",
        "found_at_last_snapshot": [{"k": k, "share": s, "neurons": n} for k, s, n in
                                   zip(found.freqs, found.shares, found.neurons, strict=True)],
        "last": measured[-1].row, **phase_steps(run),
        "chance_loss": math.log(run.p), "elapsed_s": result["elapsed_s"],
        "spectra": {"steps": [m.row["step"] for m in measured],
                    "W_E": [m.spectra["W_E"] for m in measured],
                    "W_U": [m.spectra["W_U"] for m in measured]},
    }


@report_user_errors
def main(cfg: DictConfig) -> None:
    """The Hydra task function of `grok fourier`."""
    settings = read_settings(cfg)
    root, paths = find_runs(cfg)
    runs = [load_run(path, root) for path in paths]  # every run checked before any work
    # One count for the whole analysis, from the first run's model (a sweep's runs share one).
    apply_threads(settings.threads, build_model(runs[0].cfg.model, runs[0].task),
                  settings.device)
    began = time.perf_counter()
    results = [analyse(run, settings) for run in runs]
    reports = [run_report(result, settings) for result in results]
    out = output_dir(cfg)
    write_csv(out / "fourier.csv", [m.row for r in results for m in r["measured"]])
    outputs = ["fourier.csv", "fourier.json"]
    if settings.plots:
        from grok_cli.analysis.fourier.plots import write_plots

        for report, result in zip(reports, results, strict=True):
            outputs += write_plots(out, {**report, "rows": [m.row for m in result["measured"]]})
    write_json(out / "fourier.json", {
        "run_dir": str(root), "key_threshold": settings.key_threshold,
        "key_freqs_setting": settings.key_freqs, "columns": COLUMNS,
        "elapsed_s": time.perf_counter() - began, "outputs": outputs, "runs": reports})
    for report in reports:
        last = report["last"]
        print(f"{report['run']}: {report['snapshots']} snapshot(s), key frequencies "
              f"{report['key_frequencies']}; last step {last['step']}: restricted loss "
              f"{last['restricted_loss']:.4g}, excluded loss {last['excluded_loss']:.4g}, "
              f"test_acc {last['test_acc']:.4f}")
    print(f"wrote {out}")
