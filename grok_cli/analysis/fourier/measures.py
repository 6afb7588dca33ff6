"""Fourier progress measures of modular addition (Nanda et al. 2023, "Progress measures for
grokking via mechanistic interpretability"): pure math on tensors, no files.

A network that groks (a ± b) mod p embeds each residue as cos/sin of a few key frequencies
w_k = 2πk/p and reads the answer c off logits Σ_k α_k cos(w_k(a ± b − c)). The measures:

- `fourier_basis(p)`: p orthonormal rows over the residues: the constant 1/√p, then for
  k = 1 … (p−1)/2 the normalized cos(w_k x) (row 2k−1) and sin(w_k x) (row 2k).
- `spectrum`: the norm of an embedding's component along each frequency k (its cos and sin
  rows together), and `gini` of those norms (0: spread evenly, near 1: on a few k).
- `frequency_shares`: for each MLP neuron, the share of its (centered) variance over the
  p × p input grid that frequency k explains (its terms in the 2D Fourier basis: linear in a,
  linear in b, and the products); `key_frequencies` assigns each neuron to its best k.
- `restricted_loss` / `excluded_loss`: the logits projected onto / with removed the circuit
  directions cos(w_k(a ± b)) and sin(w_k(a ± b)) of the key frequencies (for every answer c:
  these carry the cos(w_k(a ± b − c)) terms), as in Nanda et al.'s released code.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@functools.cache  # the same p in every snapshot: built once per analysis (never written to)
def fourier_basis(p: int) -> torch.Tensor:
    """[p, p] (float64): row 0 the constant, rows 2k−1 / 2k cos / sin of frequency k; p odd."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True)


def frequency_of_rows(p: int) -> torch.Tensor:
    """The frequency of each basis row: 0 for the constant, k for rows 2k−1 and 2k."""
    return (torch.arange(p) + 1) // 2


def spectrum(embedding: torch.Tensor) -> torch.Tensor:
    """Norms [K] (K = (p−1)/2) of an embedding's components along frequencies 1 … K.

    `embedding` is [p, d]: one row per residue (W_E's first p rows, or W_U's first p columns
    transposed). The component along k is the [2, d] block of basis rows 2k−1, 2k times it;
    its norm is phase-free (a shift of the residues rotates cos into sin).
    """
    p = embedding.shape[0]
    coefficients = fourier_basis(p) @ embedding.double()  # [p, d]
    power = coefficients.pow(2).sum(1)[1:]  # drop the constant row
    return power.view(-1, 2).sum(1).sqrt()


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: Σ_ij |x_i − x_j| / (2 n Σ x); 0 when all are
    equal, (n−1)/n when one holds everything. 0 for an all-zero vector."""
    x = values.double().flatten()
    total = x.sum()
    if total <= 0:
        return 0.0
    return float((x[:, None] - x[None, :]).abs().sum() / (2 * len(x) * total))


@functools.cache  # as fourier_basis
def frequency_masks(p: int) -> torch.Tensor:
    """[K, p, p] booleans: the 2D basis terms (i, j) belonging to frequency k: (const, k),
    (k, const) and (k, k) with either of cos / sin on each side."""
    freq = frequency_of_rows(p)
    k = torch.arange(1, (p - 1) // 2 + 1)[:, None, None]
    fi, fj = freq[None, :, None], freq[None, None, :]
    return ((fi == k) & ((fj == 0) | (fj == k))) | ((fi == 0) & (fj == k))


def frequency_power(activations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron: the power along each frequency [K, m] and the total centered power [m].

    `activations` [p, p, m]: neuron m's activation at input (a, b). In the 2D Fourier basis
    B A Bᵀ (orthonormal, so power is kept) the (const, const) term is the mean, dropped: the
    shares are of each neuron's variance over the grid.
    """
    p = activations.shape[0]
    # In the activations' own precision (float32 for a model: twice as fast as float64 and
    # far finer than the shares need), as batched matmuls B (A_n Bᵀ); the sums in float64.
    basis = fourier_basis(p).to(activations)
    coefficients = basis @ (activations.permute(2, 0, 1) @ basis.T)  # [m, p, p]
    power = coefficients.double().pow(2)
    power[:, 0, 0] = 0
    by_freq = torch.einsum("kij,nij->kn", frequency_masks(p).double().to(power.device), power)
    return by_freq, power.sum((1, 2))


@dataclass
class KeyFrequencies:
    freqs: list[int]  # the key frequencies, by share explained, largest first
    shares: list[float]  # each one's share of the total neuron variance (its neurons only)
    neurons: list[int]  # how many neurons each one is the best frequency of
    explained: list[float]  # per frequency 1 … K: share of total variance via its neurons


def key_frequencies(activations: torch.Tensor, threshold: float) -> KeyFrequencies:
    """Each neuron goes to the frequency explaining most of its variance; a frequency is key
    when its neurons' variance along it is at least `threshold` of all neurons' variance."""
    by_freq, total = frequency_power(activations)
    best = by_freq.argmax(0)  # [m]
    explained = torch.zeros(by_freq.shape[0], dtype=torch.float64)
    explained.index_add_(0, best, by_freq.gather(0, best[None])[0])
    explained /= total.sum().clamp_min(torch.finfo(torch.float64).tiny)
    counts = torch.bincount(best[total > 0], minlength=by_freq.shape[0])  # dead ones: none
    order = [int(i) for i in explained.argsort(descending=True) if explained[i] >= threshold]
    return KeyFrequencies([i + 1 for i in order], [float(explained[i]) for i in order],
                          [int(counts[i]) for i in order], explained.tolist())


def key_share(activations: torch.Tensor, freqs: list[int]) -> float:
    """The share of all neurons' variance over the grid along the given frequencies."""
    if not freqs:
        return 0.0
    by_freq, total = frequency_power(activations)
    return float(by_freq[[k - 1 for k in freqs]].sum() / total.sum())


def circuit_directions(p: int, freqs: list[int], sign: int = 1) -> torch.Tensor:
    """[2·len(freqs), p²] orthonormal: cos(w_k(a + sign·b)) and sin(w_k(a + sign·b)) over the
    grid (row a·p + b), each scaled by √2/p to unit norm (Σ_ab cos² = p²/2 for p odd, k ≠ 0).
    sign = −1 gives subtraction's directions. Nanda et al. build the same vectors as
    (cos a cos b ∓ sin a sin b)/√2 from the normalized 1D basis."""
    x = torch.arange(p, dtype=torch.float64)
    grid = (x[:, None] + sign * x[None, :]).flatten()
    rows = []
    for k in freqs:
        phase = 2 * math.pi * k * grid / p
        rows += [torch.cos(phase), torch.sin(phase)]
    if not rows:
        return torch.zeros(0, p * p, dtype=torch.float64)
    return torch.stack(rows) * math.sqrt(2) / p


def circuit_component(logits: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """The logits' component [p², C] in the span of the directions, for every answer c."""
    d = directions.to(logits.device)
    return d.T @ (d @ logits.double())


def mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.double(), labels))


def restricted_loss(logits: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor
                    ) -> float:
    """Loss of the logits [p², C] kept only along the key frequencies' circuit directions,
    plus the constant term (each answer's mean logit over the grid: the directions have mean
    0, so this is Nanda et al.'s bias correction), over all p² inputs."""
    kept = circuit_component(logits, directions) + logits.double().mean(0)
    return mean_cross_entropy(kept, labels)


def excluded_loss(logits: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor,
                  rows: torch.Tensor) -> float:
    """Loss on the given rows (the training pairs) of the logits with the key frequencies'
    circuit directions removed."""
    removed = logits.double() - circuit_component(logits, directions)
    return mean_cross_entropy(removed[rows], labels[rows])
