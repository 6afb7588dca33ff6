"""`model=onehot_mlp`: the MLP of Prieto et al. (2025), "Grokking at the edge of numerical
stability": the one-hot codes of the operands concatenated, hidden ReLU layers, a linear
readout, no biases anywhere (their main setting: hidden sizes 200, 200 on a + b mod 113).

It one-hot codes every input position that varies across the training inputs; positions
that hold one token in every equation (`=`, the op symbol, `%`) carry no information and are
left out, so `a b =` (task.format=nanda) gives exactly their input [one-hot(a), one-hot(b)].
The codes span the vocabulary, so the `=` token adds an always-zero row per operand: p + 1
codes per operand instead of their p (the layer's default init range then differs by
sqrt(p / (p + 1)), 0.4% at p = 113). Weights start from torch's nn.Linear default, as theirs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from grok_cli.errors import check
from grok_cli.models.base import GrokModel
from grok_cli.tasks import TaskData


class OneHotMLP(GrokModel):
    def __init__(self, columns: torch.Tensor, vocab: int, classes: int, cfg: DictConfig) -> None:
        super().__init__()
        self.register_buffer("columns", columns, persistent=False)
        self.vocab = vocab
        sizes = [len(columns) * vocab, *cfg.hidden_sizes, classes]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out, bias=cfg.bias), nn.ReLU()]
        self.mlp = nn.Sequential(*layers[:-1])  # no ReLU after the readout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        codes = F.one_hot(x[:, self.columns], self.vocab).flatten(1)
        return self.mlp(codes.to(self.mlp[0].weight.dtype))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"unembed": self.mlp[-1].weight.T}


def check_config(cfg: DictConfig) -> None:
    sizes = cfg.hidden_sizes
    check(OmegaConf.is_list(sizes) and len(sizes) > 0
          and all(isinstance(n, int) and n > 0 for n in sizes), "model.hidden_sizes",
          OmegaConf.to_container(sizes) if OmegaConf.is_list(sizes) else sizes,
          "a non-empty list of positive integers")
    check(isinstance(cfg.bias, bool), "model.bias", cfg.bias, "true or false")


def build_onehot_mlp(cfg: DictConfig, task: TaskData) -> OneHotMLP:
    check(task.kind == "lm", "model", cfg.name,
          "a modular task (one-hot codes of a whole text would not fit; use model=mlp)")
    x = task.train.x
    varying = torch.nonzero((x != x[:1]).any(0)).flatten().cpu()
    check(len(varying) > 0, "model", cfg.name,
          "a task whose inputs vary (every training input here is the same sequence)")
    return OneHotMLP(varying, task.vocab_size, task.n_classes, cfg)
