"""grok fourier's math on constructed inputs (basis, spectrum, Gini, key frequencies,
restricted / excluded loss), checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from grok_cli.analysis.fourier import measures as fourier

P = 23
K = (P - 1) // 2


def wave(k: int, x: torch.Tensor, phase: float = 0.0) -> torch.Tensor:
    return torch.cos(2 * math.pi * k * x / P + phase)


@pytest.mark.parametrize("p", [3, 23, 113])
def test_fourier_basis_is_orthonormal_constant_then_cos_sin(p):
    basis = fourier.fourier_basis(p)
    assert torch.allclose(basis @ basis.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    x = torch.arange(p, dtype=torch.float64)
    assert torch.allclose(basis[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    k = (p - 1) // 2  # the last frequency: rows p-2 (cos) and p-1 (sin), norm sqrt(p/2)
    scale = math.sqrt(2 / p)
    assert torch.allclose(basis[p - 2], scale * torch.cos(2 * math.pi * k * x / p))
    assert torch.allclose(basis[p - 1], scale * torch.sin(2 * math.pi * k * x / p))


def test_gini_by_hand():
    assert fourier.gini(torch.tensor([1.0, 1.0, 1.0, 1.0])) == 0.0
    assert fourier.gini(torch.tensor([0.0, 0.0, 0.0, 5.0])) == pytest.approx(0.75)  # (n-1)/n
    # |1-3| + |1-0| + |3-0| = 6, counted twice, over 2 * 3 * 4
    assert fourier.gini(torch.tensor([1.0, 3.0, 0.0])) == pytest.approx(12 / 24)
    assert fourier.gini(torch.zeros(5)) == 0.0


def test_spectrum_of_a_known_frequency_embedding_peaks_there_with_gini_near_one():
    torch.manual_seed(0)
    x = torch.arange(P, dtype=torch.float64)
    freqs = [3, 7, 10]
    directions = torch.randn(2 * len(freqs), 16, dtype=torch.float64)
    embedding = sum(wave(k, x, 0.4 * i)[:, None] * directions[2 * i]
                    + 0.5 * wave(k, x, 1.0 + i)[:, None] * directions[2 * i + 1]
                    for i, k in enumerate(freqs))
    norms = fourier.spectrum(embedding + 2.0)  # a constant offset is not a frequency
    peaks = sorted(norms.argsort(descending=True)[:3].add(1).tolist())
    assert peaks == freqs
    others = [k for k in range(1, K + 1) if k not in freqs]
    assert norms[[k - 1 for k in others]].abs().max() < 1e-10
    assert fourier.gini(norms) == pytest.approx(1 - len(freqs) / K, abs=0.05)  # 0.73 of 11


def test_spectrum_value_by_hand():
    """One column cos(2πk x/p): its norm along k is ‖cos‖ = sqrt(p/2), zero elsewhere."""
    x = torch.arange(P, dtype=torch.float64)
    norms = fourier.spectrum(wave(5, x)[:, None])
    assert norms[4] == pytest.approx(math.sqrt(P / 2))
    assert norms.sum() == pytest.approx(math.sqrt(P / 2))


def test_random_embedding_has_a_low_gini():
    torch.manual_seed(0)
    assert fourier.gini(fourier.spectrum(torch.randn(113, 128))) < 0.1


def test_key_frequencies_of_neurons_built_from_known_frequencies():
    """Neurons cos(w_k(a+b)+φ) (k = 4 for 6 of them, 9 for 3) and cos(w_k a) products: each
    is all frequency k, so the key frequencies are 4 and 9 with their variance shares."""
    a = torch.arange(P, dtype=torch.float64)[:, None]
    b = torch.arange(P, dtype=torch.float64)[None, :]
    neurons = [wave(4, a + b, 0.3 * n) for n in range(6)]
    neurons += [wave(9, a, 0.2) * wave(9, b, 1.1) + 0.5 * wave(9, b) for _ in range(3)]
    acts = torch.stack(neurons, -1) + 1.0  # a mean is not variance
    found = fourier.key_frequencies(acts, threshold=0.05)
    assert found.freqs == [4, 9]
    assert found.neurons == [6, 3]
    variance = acts.var(dim=(0, 1), unbiased=False) * P * P  # each neuron's centered power
    expected_4 = float(variance[:6].sum() / variance.sum())
    assert found.shares == pytest.approx([expected_4, 1 - expected_4])
    assert fourier.key_share(acts, [4, 9]) == pytest.approx(1.0)
    assert fourier.key_share(acts, [4]) == pytest.approx(expected_4)


def circuit_logits(freqs: list[int], sign: int, scale: float = 4.0) -> torch.Tensor:
    """[p², p] logits Σ_k cos(w_k(a ± b − c)), row a·p + b: the known algorithm."""
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).double().T
    c = torch.arange(P, dtype=torch.float64)
    return scale * sum(wave(k, (a + sign * b)[:, None] - c[None, :]) for k in freqs)


@pytest.mark.parametrize(("op", "sign"), [("add", 1), ("sub", -1)])
def test_circuit_logits_restricted_loss_is_the_full_loss_excluded_is_chance(op, sign):
    freqs = [2, 5, 8]
    logits = circuit_logits(freqs, sign)
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
    labels = (a + sign * b) % P
    full = float(F.cross_entropy(logits, labels))
    assert full < 0.5  # the circuit answers correctly
    directions = fourier.circuit_directions(P, freqs, sign)
    assert fourier.restricted_loss(logits, labels, directions) == pytest.approx(full, abs=1e-9)
    train = torch.arange(0, P * P, 3)
    assert fourier.excluded_loss(logits, labels, directions, train) == pytest.approx(
        math.log(P), abs=1e-9)
    # Directions of other frequencies keep nothing of it (chance) and remove nothing.
    other = fourier.circuit_directions(P, [1, 3], sign)
    assert fourier.restricted_loss(logits, labels, other) == pytest.approx(math.log(P), abs=1e-9)
    assert fourier.excluded_loss(logits, labels, other, train) == pytest.approx(
        float(F.cross_entropy(logits[train], labels[train])), abs=1e-9)


def test_restricted_loss_keeps_each_answers_mean_logit():
    """A per-answer constant (a bias towards c = 0) survives the restriction: the constant
    term, Nanda et al.'s bias correction."""
    logits = circuit_logits([2], 1)
    logits[:, 0] += 3.0
    a, b = torch.cartesian_prod(torch.arange(P), torch.arange(P)).T
    labels = (a + b) % P
    directions = fourier.circuit_directions(P, [2], 1)
    assert fourier.restricted_loss(logits, labels, directions) == pytest.approx(
        float(F.cross_entropy(logits, labels)), abs=1e-9)


def test_circuit_directions_are_orthonormal():
    d = fourier.circuit_directions(P, [1, 4, 11], -1)
    assert torch.allclose(d @ d.T, torch.eye(6, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("p", [3, 11, 23])
def test_frequency_power_sums_each_frequencys_terms(p):
    """Against a direct sum over the 2D basis terms (i, j) of frequency k: (const, k),
    (k, const) and (k, k), by mask, as the analysis computed it before."""
    torch.manual_seed(p)
    acts = torch.randn(p, p, 5, dtype=torch.float64)
    basis = fourier.fourier_basis(p)
    power = torch.stack([(basis @ acts[:, :, n] @ basis.T) ** 2 for n in range(5)])
    freq = fourier.frequency_of_rows(p)
    fi, fj = freq[:, None], freq[None, :]
    for k in range(1, (p - 1) // 2 + 1):
        mask = ((fi == k) & ((fj == 0) | (fj == k))) | ((fi == 0) & (fj == k))
        expected = (power * mask).sum((1, 2))
        assert torch.allclose(fourier.frequency_power(acts)[0][k - 1], expected, rtol=1e-12)
    total = power.sum((1, 2)) - power[:, 0, 0]
    assert torch.allclose(fourier.frequency_power(acts)[1], total, rtol=1e-12)
