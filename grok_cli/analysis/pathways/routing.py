"""Load MoE checkpoints and capture, in one forward pass, router probabilities and per-sample loss.

Routers are found by module name: the MoE block's `gate` (OLMoE, Qwen-MoE: `layers[i].mlp.gate`;
Mixtral: `layers[i].block_sparse_moe.gate`), whose weight has one row per expert. A forward
hook on each gate sees its logits (transformers 5 routers return a tuple whose first item is
the logits; older versions return the logits tensor), so no model-specific code is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn

from grok_cli.errors import GrokError
from grok_cli.hub import hub_reachable

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
LOSS_TOKENS = ("all", "last")


@dataclass
class Checkpoint:
    """One model to analyse: a local folder, or a hub id at a revision."""

    name: str  # label in the outputs
    source: str  # local folder or hub model id
    revision: str | None = None
    aliases: set[str] = field(default_factory=set)  # names an accuracy file may use
    step: int | None = None  # training step of a `grok run` snapshot

    def describe(self) -> str:
        return f"{self.source}@{self.revision}" if self.revision else self.source


@dataclass
class Routing:
    """What one checkpoint does on the samples."""

    g: np.ndarray  # (samples, layers, experts): token-averaged router softmax
    loss: np.ndarray  # (samples,): mean next-token NLL over the real tokens
    router_weights: np.ndarray  # (layers, experts, hidden)


# ---- hub access: fail in seconds, not minutes of retries ----

def _cached(source: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(source, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id is "not cached", reported below
        return False
    return isinstance(found, str)


def hub_kwargs(source: str, revision: str | None) -> dict[str, Any]:
    """from_pretrained kwargs for a folder or hub id; GrokError when the hub cannot serve it."""
    if Path(source).is_dir():
        return {}
    if hub_reachable():
        return {"revision": revision}
    if _cached(source, revision):
        return {"revision": revision, "local_files_only": True}
    where = f"{source}@{revision}" if revision else source
    raise GrokError(f"cannot load {where}: it is not a local folder, not in the HF cache, and "
                    "the hub is unreachable; download it elsewhere and pass "
                    "moe.checkpoints=[folder,...] (save_pretrained folders)")


# ---- configs and models ----

def first_line(err: Exception) -> str:
    """transformers' load errors run over many lines; the first one says what went wrong."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def num_experts(config: Any) -> int | None:
    for key in ("num_experts", "num_local_experts", "n_routed_experts"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" bar or load warnings per checkpoint: ten checkpoints would flood
    the output of `grok pathways`. Errors still raise; the settings are restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_config(checkpoint: Checkpoint) -> Any:
    from transformers import AutoConfig

    kwargs = hub_kwargs(checkpoint.source, checkpoint.revision)
    try:
        return AutoConfig.from_pretrained(checkpoint.source, **kwargs)
    except (OSError, ValueError) as err:
        raise GrokError(f"cannot load the config of {checkpoint.describe()}: "
                        f"{first_line(err)}") from err


def architecture(config: Any) -> tuple:
    """What must match between checkpoints for their pathways to be comparable."""
    return (config.model_type, getattr(config, "num_hidden_layers", None),
            num_experts(config), getattr(config, "hidden_size", None))


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_model(checkpoint: Checkpoint, dtype: str | None, device_map: Any,
               device: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    kwargs = hub_kwargs(checkpoint.source, checkpoint.revision)
    if dtype is not None:
        kwargs["dtype"] = DTYPES[dtype]
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(checkpoint.source, **kwargs)
    except (OSError, ValueError, SafetensorError) as err:  # a missing, foreign or cut file
        raise GrokError(f"cannot load model {checkpoint.describe()}: {first_line(err)}") from err
    if device_map is None:
        model = model.to(device)
    return model.eval()


def find_gates(model: nn.Module) -> list[nn.Module]:
    """The router of each MoE layer, in layer order."""
    experts = num_experts(model.config)
    gates = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if (name.rsplit(".", 1)[-1] == "gate" and isinstance(weight, torch.Tensor)
                and weight.dim() == 2 and weight.shape[0] == experts):
            gates.append(module)
    return gates


def router_weights(gates: list[nn.Module]) -> np.ndarray:
    return np.stack([gate.weight.detach().float().cpu().numpy() for gate in gates])


# ---- the forward pass ----

def pad_batch(sequences: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right padding: with a causal mask, real tokens never see the padding after them."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = sequence
        mask[row, :len(sequence)] = 1
    return ids, mask


def per_sample_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                    loss_tokens: str) -> torch.Tensor:
    """Mean next-token NLL over each sample's real targets (all of them, or the last only)."""
    targets = ids[:, 1:]
    weights = mask[:, 1:].float()
    if loss_tokens == "last":
        last = mask.sum(1) - 2  # index, among the targets, of the last real token
        weights = torch.zeros_like(weights)
        valid = last >= 0
        weights[valid, last[valid]] = 1.0
    nll = nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets,
                                      reduction="none")
    # A one-token sample has no target: NaN rather than a fake zero loss.
    return (nll * weights).sum(1) / weights.sum(1)


class RouterRecorder:
    """Forward hooks that average each gate's softmax over the real tokens of the batch."""

    def __init__(self, gates: list[nn.Module]) -> None:
        self.mask: torch.Tensor | None = None
        self.layers: list[torch.Tensor | None] = [None] * len(gates)
        self.handles = [gate.register_forward_hook(self._hook(i)) for i, gate in enumerate(gates)]

    def _hook(self, layer: int):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            logits = output[0] if isinstance(output, tuple) else output
            mask = self.mask.to(logits.device)
            probs = torch.softmax(logits.float(), dim=-1).reshape(*mask.shape, -1)
            summed = (probs * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            self.layers[layer] = summed.cpu()
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def capture(model: nn.Module, sequences: list[torch.Tensor], batch_size: int,
            loss_tokens: str = "all", pad_id: int = 0) -> Routing:
    """Router probabilities g and per-sample loss for every sequence, batched with padding."""
    gates = find_gates(model)
    if not gates:
        raise GrokError(f"model {type(model).__name__} has no MoE router layers")
    recorder = RouterRecorder(gates)
    device = next(model.parameters()).device
    # Similar lengths share a batch, so little compute goes to padding.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    g = np.zeros((len(sequences), len(gates), gates[0].weight.shape[0]))
    loss = np.zeros(len(sequences))
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids, mask = pad_batch([sequences[i] for i in rows], pad_id)
            recorder.mask = mask
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            loss[rows] = per_sample_loss(logits.cpu(), ids, mask, loss_tokens).numpy()
            g[rows] = torch.stack(recorder.layers, dim=1).double().numpy()
    finally:
        recorder.remove()
    return Routing(g=g, loss=loss, router_weights=router_weights(gates))


def load_tokenizer(source: str, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    kwargs = hub_kwargs(source, revision)
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise GrokError(f"cannot load a tokenizer from {source} (for data with `text`; set "
                        f"moe.tokenizer=... or give `input_ids`): {first_line(err)}") from err
