"""Which checkpoints `grok pathways` analyses (moe=local, moe=olmoe_1b_7b, moe=from_run), in
training order, and the check that they share one MoE architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from grok_cli.analysis.pathways.routing import Checkpoint, architecture, load_config, num_experts
from grok_cli.errors import GrokError, check
from grok_cli.runfolder import snapshots
from grok_cli.runfolder.checkpoints import verify


def resolve_checkpoints(moe: DictConfig) -> list[Checkpoint]:
    if moe.from_run is not None:
        return run_checkpoints(Path(moe.from_run))
    if moe.model is not None:
        return hub_checkpoints(moe.model, list(moe.revisions))
    return local_checkpoints([str(c) for c in moe.checkpoints])


def local_checkpoints(folders: list[str]) -> list[Checkpoint]:
    checkpoints = []
    for folder in folders:
        path = Path(folder)
        check(path.is_dir(), "moe.checkpoints", folder, "existing save_pretrained folders")
        checkpoints.append(Checkpoint(name=path.name, source=str(path),
                                      aliases={path.name, folder, str(path.resolve())}))
    names = [c.name for c in checkpoints]
    if len(set(names)) < len(names):  # same folder names in different places: use paths
        for checkpoint in checkpoints:
            checkpoint.name = checkpoint.source
    return checkpoints


def hub_checkpoints(model: str, revisions: list[str]) -> list[Checkpoint]:
    return [Checkpoint(name=rev, source=model, revision=rev, aliases={rev, f"{model}@{rev}"})
            for rev in revisions]


def run_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The checkpoints/step_<N>/ snapshots of a `grok run`, by N."""
    check(run_dir.is_dir(), "moe.from_run", str(run_dir), "an existing grok run folder")
    found = [(step, path) for step, path in snapshots(run_dir).items()
             if path.is_dir() and path.name == f"step_{step}"]
    check(bool(found), "moe.from_run", str(run_dir),
          "a grok run folder with checkpoints/step_<N>/ save_pretrained folders")
    for _, path in found:
        verify(path)  # the digests written with it: safetensors itself has no checksum
    return [Checkpoint(name=path.name, source=str(path), step=step,
                       aliases={path.name, str(step), str(path)})
            for step, path in sorted(found)]


def check_architectures(checkpoints: list[Checkpoint]) -> Any:
    """All checkpoints must be MoE models of one architecture; returns the first config."""
    configs = [load_config(c) for c in checkpoints]
    for checkpoint, config in zip(checkpoints, configs, strict=True):
        if num_experts(config) is None:
            raise GrokError(f"{checkpoint.describe()} is a {config.model_type} model without MoE "
                            "layers (no num_experts in its config); pathways need an MoE model "
                            "such as OLMoE, Mixtral or Qwen-MoE")
    first = architecture(configs[0])
    for checkpoint, config in zip(checkpoints[1:], configs[1:], strict=True):
        if architecture(config) != first:
            keys = "(model_type, layers, experts, hidden)"
            raise GrokError(f"checkpoints differ in architecture {keys}: "
                            f"{checkpoints[0].describe()} is {first}, "
                            f"{checkpoint.describe()} is {architecture(config)}; "
                            "pass checkpoints of one model")
    return configs[0]
