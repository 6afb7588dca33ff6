"""`grok pathways`: pathway metrics of MoE checkpoints on training samples, and correlations.

Flow: validate the config -> resolve checkpoints and accuracy -> check they share one
architecture -> read samples -> one batched forward pass per checkpoint (router probabilities +
per-sample loss) -> memorization step of each sample -> group metrics per checkpoint ->
correlation with accuracy -> csv/json/png.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig

from grok_cli.analysis.output import output_dir
from grok_cli.analysis.pathways import metrics
from grok_cli.analysis.pathways.accuracy import accuracy_label, load_accuracy
from grok_cli.analysis.pathways.aggregate import (
    CheckpointResult,
    add_accuracy,
    correlation_rows,
    group_rows,
    memorize,
    sample_groups,
)
from grok_cli.analysis.pathways.checkpoints import check_architectures, resolve_checkpoints
from grok_cli.analysis.pathways.config import batch_size, validate
from grok_cli.analysis.pathways.outputs import MAX_RELATIVE_SE, d_path_note, write_outputs
from grok_cli.analysis.pathways.routing import Checkpoint, capture, load_model, pick_device
from grok_cli.analysis.pathways.samples import Samples, load_samples
from grok_cli.errors import report_user_errors
from grok_cli.threads import apply_threads

log = logging.getLogger(__name__)


def analyse_checkpoint(cfg: DictConfig, model: Any, samples: Samples) -> CheckpointResult:
    parameters = sum(p.numel() for p in model.parameters())
    routing = capture(model, samples.sequences, batch_size(cfg.moe, parameters),
                      samples.loss_tokens)
    consistency, complexity = metrics.routing_smoothness(routing.g, routing.router_weights)
    return CheckpointResult(metrics.sample_pathways(routing.g, cfg.pathway.threshold),
                            routing.loss, consistency, complexity)


def log_d_path(rows: list[dict[str, Any]]) -> None:
    note = d_path_note(rows)
    if note["pairs"] == "all":
        return
    message = (f"D_path from sampled pairs in {note['sampled_rows']} of {len(rows)} rows "
               f"(more than pathway.max_pairs pairs of distinct pathways): largest standard error "
               f"{note['max_relative_se']:.3%} of the mean (d_path_se in pathways.csv)")
    if note["within_target"]:
        log.info(message)
    else:
        log.warning("%s, above the %.1f%% target: raise pathway.max_pairs, or null for all "
                    "pairs", message, 100 * MAX_RELATIVE_SE)


def route(cfg: DictConfig, checkpoints: list[Checkpoint],
          samples: Samples) -> tuple[list[CheckpointResult], int]:
    """Every checkpoint's routing, and the thread count (`threads=`, from the first model:
    the checkpoints share one architecture) for the edit distances after."""
    device = pick_device(cfg.moe.device)
    results, threads = [], 1
    for number, checkpoint in enumerate(checkpoints):
        model = load_model(checkpoint, cfg.moe.torch_dtype, cfg.moe.device_map, device)
        if number == 0:
            threads = apply_threads(cfg.threads, model, next(model.parameters()).device)
        log.info("routing %d samples through %s", len(samples.ids), checkpoint.describe())
        results.append(analyse_checkpoint(cfg, model, samples))
        del model
    return results, threads


def plot_settings(cfg: DictConfig, checkpoints: list[Checkpoint],
                  samples: Samples) -> dict[str, Any]:
    steps = [c.step for c in checkpoints]
    title = (f"{len(samples.ids)} samples, {len(checkpoints)} checkpoints; pathway threshold "
             f"{cfg.pathway.threshold}, unit {cfg.pathway.unit}")
    return {"steps": steps if None not in steps else None,
            "accuracy_label": accuracy_label(cfg), "title": title}


@report_user_errors
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    validate(cfg, HydraConfig.get().runtime.choices.get("moe"))
    checkpoints = resolve_checkpoints(cfg.moe)
    accuracy = load_accuracy(cfg, checkpoints)
    check_architectures(checkpoints)
    samples = load_samples(cfg, checkpoints[0])
    results, threads = route(cfg, checkpoints, samples)
    names = [c.name for c in checkpoints]
    memorization = memorize(samples, np.stack([r.loss for r in results], axis=1),
                            cfg.memorization)
    groups = sample_groups(samples, memorization.memorized_at, names)
    rows = group_rows(cfg, names, results, groups, threads)
    add_accuracy(rows, accuracy, cfg.loss_window)
    log_d_path(rows)
    out = output_dir(cfg)
    write_outputs(out, cfg, names, samples, results, memorization, rows,
                  correlation_rows(rows), plot_settings(cfg, checkpoints, samples))
    log.info("%d checkpoints x %d samples (%d memorized; epsilon %s), %d groups -> %s",
             len(names), len(samples.ids), int((memorization.memorized_at >= 0).sum()),
             _epsilons(memorization.epsilon), len(groups), out)


def _epsilons(epsilon: dict[str, float]) -> str:
    return ", ".join(f"{group} {value:.4g}" for group, value in epsilon.items())
