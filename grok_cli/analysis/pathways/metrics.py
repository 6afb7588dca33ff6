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
from collections import Counter
from typing import NamedTuple

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

# Distinct strings per block of the all-pairs matrix (a 2048 x 2048 float64 block is 32 MiB).
CDIST_BLOCK = 2048

Pathway = list[list[int]]  # one list of expert indices per layer


def layer_pathway(weights: np.ndarray, threshold: float) -> list[int]:
    """Experts by descending weight (ties: lower index), shortest prefix reaching threshold."""
    order = np.argsort(-np.asarray(weights, dtype=np.float64), kind="stable")
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64)[order])
    reached = np.nonzero(cumulative >= threshold - THRESHOLD_TOLERANCE)[0]
    keep = int(reached[0]) + 1 if len(reached) else len(order)
    return [int(k) for k in order[:keep]]


def sample_pathways(g: np.ndarray, threshold: float) -> list[Pathway]:
    """Pathways of every sample from routing weights g of shape (samples, layers, experts):
    layer_pathway of each (sample, layer), sorted and summed for all of them at once."""
    g = np.asarray(g, dtype=np.float64)
    order = np.argsort(-g, axis=-1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(g, order, axis=-1), axis=-1)
    reached = cumulative >= threshold - THRESHOLD_TOLERANCE
    keep = np.where(reached.any(-1), reached.argmax(-1) + 1, g.shape[-1])
    return [[row[:k].tolist() for row, k in zip(sample, counts, strict=True)]
            for sample, counts in zip(order, keep, strict=True)]


def layer_string(experts: list[int], unit: str = "char") -> str:
    if unit == "char":
        return ",".join(map(str, experts))
    return "".join(chr(EXPERT_CHAR_BASE + k) for k in experts)


def pathway_string(pathway: Pathway, unit: str = "char") -> str:
    """The pathway as one string: readable for `char`, one character per expert for `expert`."""
    separator = "-" if unit == "char" else EXPERT_LAYER_SEPARATOR
    return separator.join(layer_string(experts, unit) for experts in pathway)


class PairDistance(NamedTuple):
    """Edit distance over pairs of samples: mean, std over the pairs, how many pairs, and the
    standard error of the mean (0 when every pair was computed)."""

    mean: float
    std: float
    pairs: int
    se: float


def _cdist(queries: list[str], choices: list[str], workers: int) -> np.ndarray:
    # Passing the same list object lets rapidfuzz compute only one triangle (symmetric scorer).
    return process.cdist(queries, choices, scorer=Levenshtein.distance, dtype=np.int32,
                         workers=workers)


def _all_pairs_sums(strings: list[str], workers: int) -> tuple[float, float, int]:
    """Sum and sum of squares of the edit distance over all pairs i < j.

    Equal strings are at distance 0, so only distinct strings go through cdist: a pair of
    distinct strings u, v stands for count(u) * count(v) pairs of samples (exact sums, fewer
    distances). Square blocks bound memory for large n: each diagonal block is one symmetric
    cdist, each block above the diagonal a full one, so every pair is computed once.
    """
    counts = Counter(strings)
    unique, weights = list(counts), np.array(list(counts.values()), dtype=np.float64)
    total = total_sq = 0.0
    for i in range(0, len(unique), CDIST_BLOCK):
        rows, row_weights = unique[i:i + CDIST_BLOCK], weights[i:i + CDIST_BLOCK]
        for j in range(i, len(unique), CDIST_BLOCK):
            columns = rows if j == i else unique[j:j + CDIST_BLOCK]
            distances = _cdist(rows, columns, workers).astype(np.float64)
            # A diagonal block holds each pair twice (and zeros on its diagonal): halve it.
            share = 0.5 if j == i else 1.0
            column_weights = weights[j:j + CDIST_BLOCK]
            total += share * (row_weights @ distances @ column_weights)
            total_sq += share * (row_weights @ np.square(distances) @ column_weights)
    n = len(strings)
    return total, total_sq, n * (n - 1) // 2


def sample_pairs(n: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`max_pairs` pairs (i, j), i != j, drawn uniformly and independently (with replacement).

    Independent uniform draws from all pairs make the sample mean an unbiased estimate of the
    all-pairs mean, with standard error std / sqrt(max_pairs).
    """
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, size=max_pairs)
    # Offsetting by 1..n-1 (mod n) draws the second index uniformly among the other samples.
    second = (first + rng.integers(1, n, size=max_pairs)) % n
    return first, second


def _sampled_pairs_sums(strings: list[str], max_pairs: int, seed: int,
                        workers: int) -> tuple[float, float, int]:
    """Sum and sum of squares over `max_pairs` random pairs i != j."""
    first, second = sample_pairs(len(strings), max_pairs, seed)
    values = process.cpdist([strings[i] for i in first], [strings[j] for j in second],
                            scorer=Levenshtein.distance, dtype=np.int32,
                            workers=workers).astype(np.float64)
    return values.sum(), np.square(values).sum(), max_pairs


def mean_pair_distance(strings: list[str], max_pairs: int | None = None, seed: int = 0,
                       workers: int = 1) -> PairDistance:
    """Edit distance over all pairs of samples, or over `max_pairs` random pairs when there are
    more pairs of distinct strings than that (the exact sums cost one distance per such pair);
    `workers`: rapidfuzz's threads (`threads=`; -1 = every core the machine has).

    (nan, nan, 0, nan) with fewer than two samples.
    """
    n = len(strings)
    if n < 2:
        return PairDistance(math.nan, math.nan, 0, math.nan)
    distinct = len(set(strings))  # the all-pairs cost: pairs of distinct strings
    sampled = max_pairs is not None and distinct * (distinct - 1) // 2 > max_pairs
    if sampled:
        total, total_sq, pairs = _sampled_pairs_sums(strings, max_pairs, seed, workers)
    else:
        total, total_sq, pairs = _all_pairs_sums(strings, workers)
    mean = total / pairs
    squares = max(total_sq - pairs * mean * mean, 0.0)  # sum of squared deviations
    se = math.sqrt(squares / (pairs - 1) / pairs) if sampled else 0.0
    return PairDistance(mean, math.sqrt(squares / pairs), pairs, se)


def d_path(pathways: list[Pathway], unit: str = "char", max_pairs: int | None = None,
           seed: int = 0, workers: int = 1) -> dict[str, float]:
    """D_path of a group of samples, over whole pathways and per layer.

    Keys: d_path_mean, d_path_std, d_path_se, n_pairs, d_path_layer_<l> for each layer l
    (sampled layers use the same pairs as the whole pathways: same seed).
    """
    whole = mean_pair_distance([pathway_string(p, unit) for p in pathways], max_pairs, seed,
                               workers)
    result: dict[str, float] = {"d_path_mean": whole.mean, "d_path_std": whole.std,
                                "d_path_se": whole.se, "n_pairs": whole.pairs}
    n_layers = len(pathways[0]) if pathways else 0
    for layer in range(n_layers):
        segments = [layer_string(p[layer], unit) for p in pathways]
        result[f"d_path_layer_{layer}"] = mean_pair_distance(segments, max_pairs, seed,
                                                             workers).mean
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


def memorization_index(losses: np.ndarray, epsilon: float | np.ndarray,
                       delta: float) -> np.ndarray:
    """First checkpoint index t* from which a sample stays memorized; -1 when never.

    losses has shape (samples, checkpoints), checkpoints in training order; epsilon is one
    value or one per sample. Memorized at t*: for every t >= t*, loss(t) <= epsilon and
    |loss(t) - loss(T)| <= delta (T = the last).
    """
    losses = np.asarray(losses, dtype=np.float64)
    epsilon = np.asarray(epsilon, dtype=np.float64)
    if epsilon.ndim:
        epsilon = epsilon[:, None]
    ok = (losses <= epsilon) & (np.abs(losses - losses[:, -1:]) <= delta)
    # Reversed cumulative product: True at t exactly when every t' >= t is ok.
    holds_from = np.flip(np.cumprod(np.flip(ok, axis=1), axis=1), axis=1).astype(bool)
    first = np.argmax(holds_from, axis=1)
    return np.where(holds_from[:, -1], first, -1)


def auto_epsilon(final_losses: np.ndarray, low: float = 0.20, high: float = 0.25) -> float:
    """The paper's choice of epsilon: a share in [low, high] of these samples memorized at the
    last checkpoint (final loss <= epsilon), as near the middle as ties in the losses allow.

    epsilon lies halfway between the k-th and (k+1)-th smallest final loss, so exactly k
    samples are at or under it; NaN losses (no target token) never count. NaN if none is finite.
    """
    losses = np.sort(np.asarray(final_losses, dtype=np.float64))
    values = losses[np.isfinite(losses)]
    if not len(values):
        return math.nan
    n = len(losses)
    # k samples can be memorized alone only where the k-th loss differs from the next one.
    counts = [k for k in range(1, len(values) + 1) if k == len(values) or values[k - 1] < values[k]]
    middle = (low + high) / 2
    best = min(counts, key=lambda k: (max(low - k / n, k / n - high, 0.0), abs(k / n - middle)))
    if best == len(values):
        return float(values[-1])
    return float((values[best - 1] + values[best]) / 2)


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
