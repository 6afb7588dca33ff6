"""`loss=smoothed`: cross-entropy against labels smoothed toward uniform (Szegedy et al. 2016,
"Rethinking the Inception architecture"), in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction=reduction, label_smoothing=0.1)
