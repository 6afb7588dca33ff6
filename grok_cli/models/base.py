"""The model contract: everything the training loop and the analyses may use of a model.

Every `model=` choice builds a `GrokModel`. The loop calls `forward`, adds `auxiliary_loss`,
asks `noisy`, and lets `save_step` write a snapshot in a model's own format; the analyses
read named points (TransformerLens-style names) and never branch on the model's name:

| name                   | kind       | what                                              |
|------------------------|------------|---------------------------------------------------|
| `embed`                | weight     | token embedding [vocab, d] (row i: token id i)    |
| `unembed`              | weight     | map from the last representation to logits [d, C] |
| `blocks.{i}.mlp.in`    | activation | block i's MLP input [..., d]                      |
| `blocks.{i}.mlp.hidden`| activation | its neurons after the nonlinearity [..., m]       |
| `blocks.{i}.mlp.out`   | activation | its output, before it joins the residual [..., d] |

A model names the points it has (`weights`, `activations`); an analysis asks for the ones it
needs and gets one error line when a model lacks one. Activations come as the model computes
them: a fast path that runs its last block at the answer position alone gives [B, ...]
there, others [B, T, ...].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from grok_cli.errors import GrokError

# (the module whose forward hook sees the point, (inputs, output) -> the point's tensor)
Hook = tuple[nn.Module, Callable[[tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]]


def hook_input(module: nn.Module) -> Hook:
    return module, lambda inputs, _: inputs[0]


def hook_output(module: nn.Module) -> Hook:
    return module, lambda _, output: output


class GrokModel(nn.Module):
    """Token ids [B, T] (and an optional attention mask [B, T]) to logits [B, C]; a model
    whose `reads` is "pixels" takes float pixels [B, P] instead."""

    reads = "tokens"  # or "pixels": what x holds (the task says what it gives: TaskData.kind)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def auxiliary_loss(self) -> torch.Tensor | float:
        """A term the last training forward adds to the objective (OLMoE's router
        load-balancing loss); taken once. Default: none."""
        return 0.0

    def save_step(self, path: Path) -> bool:
        """Write the snapshot `path` (checkpoints/step_<N>) in the model's own format and say
        so; False (the default): the trainer writes step_<N>.pt with the state_dict."""
        return False

    @property
    def noisy(self) -> bool:
        """Whether a training forward is random (dropout): its outputs are then no measure
        of the training accuracy, which comes from an eval pass instead."""
        return any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.modules())

    def weights(self) -> dict[str, torch.Tensor]:
        """The named weight points this model has (`embed`, `unembed`)."""
        return {}

    def activations(self) -> dict[str, Hook]:
        """The named activation points this model has (`blocks.{i}.mlp.in`, ...)."""
        return {}

    def weight(self, name: str) -> torch.Tensor:
        found = self.weights()
        if name not in found:
            raise self._missing(name)
        return found[name]

    @contextmanager
    def capture(self, name: str) -> Iterator[list[torch.Tensor]]:
        """The activation point `name`, one tensor per forward inside the block."""
        points = self.activations()
        if name not in points:
            raise self._missing(name)
        module, read = points[name]
        seen: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _, i, o: seen.append(read(i, o)))
        try:
            yield seen
        finally:
            handle.remove()

    def points(self) -> list[str]:
        return [*self.weights(), *self.activations()]

    def _missing(self, name: str) -> GrokError:
        return GrokError(f"model {type(self).__name__} has no read-out point {name!r} (it has: "
                         f"{', '.join(self.points()) or 'none'})")


def blocks_mlp(mlps: list[nn.Module], hooks: Callable[[nn.Module], dict[str, Hook]]
               ) -> dict[str, Hook]:
    """`blocks.{i}.mlp.<point>` for each block's MLP, from one MLP's {point: hook}."""
    return {f"blocks.{i}.mlp.{point}": hook for i, mlp in enumerate(mlps)
            for point, hook in hooks(mlp).items()}
