"""Pathway metrics of MoE routing: pure functions on numpy arrays and strings.

Definitions (Li, Fan, Zhou, "Grokking in LLM Pretraining?"), for a sample i and MoE layer l:

- g[i, l, k]: the router's full softmax over experts, averaged over the sample's real tokens.
- pathway of layer l: experts sorted by g descending (ties: lower index first), shortest
  prefix whose cumulative weight reaches `threshold`.
- pathway string: each layer's experts joined by ",", layers joined by "-".
- D_path: edit distance between pathway strings, averaged over pairs of samples.
- routing embedding r[i, l] = sum_k g[i, l, k] * W_l[k]; c_l = cos(r[i, l], r[i, l + 1]);
  consistency = mean_l c_l, complexity = 1 - mean_l c_l / (max_l c_l + 1e-8).
"""

from __future__ import annotations

import math

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

UNITS = ("char", "expert")

# Token-averaged fp32 probabilities can land a hair under a threshold they mathematically
# reach (e.g. 0.5 + 0.2 summed as 0.69999998); this tolerance keeps that case "reached".
THRESHOLD_TOLERANCE = 1e-6

# Expert k becomes chr(EXPERT_CHAR_BASE + k) for the `expert` unit, so one edit = one expert;
# the base is above ASCII so no expert collides with the layer separator.
EXPERT_CHAR_BASE = 0x100
EXPERT_LAYER_SEPARATOR = "|"

# Samples per block of the all-pairs matrix (a 4096 x 4096 int32 block is 64 MiB).
CDIST_BLOCK = 4096

Pathway = list[list[int]]  # one list of expert indices per layer


def layer_pathway(weights: np.ndarray, threshold: float) -> list[int]:
    """Experts by descending weight (ties: lower index), shortest prefix reaching threshold."""
    order = np.argsort(-np.asarray(weights, dtype=np.float64), kind="stable")
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    reached = np.nonzero(cumulative >= threshold - THRESHOLD_TOLERANCE)[0]
    keep = int(reached[0]) + 1 if len(reached) else len(order)
    return [int(k) for k in order[:keep]]


def sample_pathways(g: np.ndarray, threshold: float) -> list[Pathway]:
    """Pathways of every sample from routing weights g of shape (samples, layers, experts)."""
    return [[layer_pathway(layer, threshold) for layer in sample] for sample in g]


def layer_string(experts: list[int], unit: str = "char") -> str:
    if unit == "char":
        return ",".join(map(str, experts))
    return "".join(chr(EXPERT_CHAR_BASE + k) for k in experts)


def pathway_string(pathway: Pathway, unit: str = "char") -> str:
    """The pathway as one string: readable for `char`, one character per expert for `expert`."""
    separator = "-" if unit == "char" else EXPERT_LAYER_SEPARATOR
    return separator.join(layer_string(experts, unit) for experts in pathway)


def _cdist(queries: list[str], choices: list[str]) -> np.ndarray:
    # Passing the same list object lets rapidfuzz compute only one triangle (symmetric scorer).
    return process.cdist(queries, choices, scorer=Levenshtein.distance, dtype=np.int32,
                         workers=-1)


def _all_pairs_sums(strings: list[str]) -> tuple[float, float, int]:
    """Sum and sum of squares of the edit distance over all pairs i < j.

    Square blocks bound memory (block x block int32) for large n: each diagonal block is one
    symmetric cdist, each block above the diagonal a full one, so every pair is computed once.
    """
    n = len(strings)
    blocks = [strings[start:start + CDIST_BLOCK] for start in range(0, n, CDIST_BLOCK)]
    total = total_sq = 0.0
    for i, rows in enumerate(blocks):
        diagonal = _cdist(rows, rows)
        parts = [diagonal[np.triu_indices(len(rows), k=1)]]
        parts += [_cdist(rows, columns).ravel() for columns in blocks[i + 1:]]
        for part in parts:
            values = part.astype(np.float64)
            total += values.sum()
            total_sq += np.square(values).sum()
    return total, total_sq, n * (n - 1) // 2


def _sampled_pairs_sums(strings: list[str], max_pairs: int, seed: int) -> tuple[float, float, int]:
    """Sum and sum of squares over `max_pairs` random pairs i != j (drawn with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(strings)
    first = rng.integers(0, n, size=max_pairs)
    # Offsetting by 1..n-1 (mod n) draws the second index uniformly among the other samples.
    second = (first + rng.integers(1, n, size=max_pairs)) % n
    values = process.cpdist([strings[i] for i in first], [strings[j] for j in second],
                            scorer=Levenshtein.distance, dtype=np.int32,
                            workers=-1).astype(np.float64)
    return values.sum(), np.square(values).sum(), max_pairs


def mean_pair_distance(strings: list[str], max_pairs: int | None = None,
                       seed: int = 0) -> tuple[float, float, int]:
    """Mean and std of the edit distance over all pairs (or `max_pairs` sampled pairs).

    Returns (mean, std, n_pairs); (nan, nan, 0) with fewer than two samples.
    """
    n = len(strings)
    if n < 2:
        return math.nan, math.nan, 0
    if max_pairs is not None and n * (n - 1) // 2 > max_pairs:
        total, total_sq, pairs = _sampled_pairs_sums(strings, max_pairs, seed)
    else:
        total, total_sq, pairs = _all_pairs_sums(strings)
    mean = total / pairs
    variance = max(total_sq / pairs - mean * mean, 0.0)
    return mean, math.sqrt(variance), pairs


def d_path(pathways: list[Pathway], unit: str = "char", max_pairs: int | None = None,
           seed: int = 0) -> dict[str, float]:
    """D_path of a group of samples, over whole pathways and per layer.

    Keys: d_path_mean, d_path_std, n_pairs, d_path_layer_<l> for each layer l.
    """
    whole = [pathway_string(p, unit) for p in pathways]
    mean, std, pairs = mean_pair_distance(whole, max_pairs, seed)
    result: dict[str, float] = {"d_path_mean": mean, "d_path_std": std, "n_pairs": pairs}
    n_layers = len(pathways[0]) if pathways else 0
    for layer in range(n_layers):
        segments = [layer_string(p[layer], unit) for p in pathways]
        result[f"d_path_layer_{layer}"] = mean_pair_distance(segments, max_pairs, seed)[0]
    return result


def routing_smoothness(g: np.ndarray, router_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (consistency, complexity) from g (n, L, K) and router weights W (L, K, hidden).

    NaN for both when there is a single MoE layer (no consecutive pair).
    """
    g = np.asarray(g, dtype=np.float64)
    embeddings = np.einsum("nlk,lkh->nlh", g, np.asarray(router_weights, dtype=np.float64))
    norms = np.linalg.norm(embeddings, axis=-1)
    dots = np.sum(embeddings[:, :-1] * embeddings[:, 1:], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = dots / (norms[:, :-1] * norms[:, 1:])
    if cosines.shape[1] == 0:
        nan = np.full(len(g), np.nan)
        return nan, nan.copy()
    mean = cosines.mean(axis=1)
    complexity = 1.0 - mean / (cosines.max(axis=1) + 1e-8)
    return mean, complexity


def memorization_index(losses: np.ndarray, epsilon: float, delta: float) -> np.ndarray:
    """First checkpoint index t* from which a sample stays memorized; -1 when never.

    losses has shape (samples, checkpoints), checkpoints in training order. Memorized at t*:
    for every t >= t*, loss(t) <= epsilon and |loss(t) - loss(T)| <= delta (T = the last).
    """
    losses = np.asarray(losses, dtype=np.float64)
    ok = (losses <= epsilon) & (np.abs(losses - losses[:, -1:]) <= delta)
    # Reversed cumulative product: True at t exactly when every t' >= t is ok.
    holds_from = np.flip(np.cumprod(np.flip(ok, axis=1), axis=1), axis=1).astype(bool)
    first = np.argmax(holds_from, axis=1)
    return np.where(holds_from[:, -1], first, -1)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average over what is there so far."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    for t in range(len(values)):
        out[t] = values[max(0, t - window + 1): t + 1].mean()
    return out


def correlation(metric: np.ndarray, accuracy: np.ndarray) -> tuple[float, float, int]:
    """(Pearson, Spearman, n) over the points where both are finite; NaN if undefined."""
    from scipy import stats  # scipy is slow to import; only the correlation step needs it

    metric = np.asarray(metric, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    keep = np.isfinite(metric) & np.isfinite(accuracy)
    x, y = metric[keep], accuracy[keep]
    n = int(keep.sum())
    # Correlation is undefined for fewer than 3 points or a constant series.
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, n
    return float(stats.pearsonr(x, y)[0]), float(stats.spearmanr(x, y)[0]), n
