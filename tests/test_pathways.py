"""Pathway metrics: pure functions on hand-made inputs, and routing capture on tiny OLMoE models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import OlmoeConfig, OlmoeForCausalLM

from grok_cli.analysis.pathways import metrics
from grok_cli.analysis.pathways.aggregate import add_accuracy, correlation_rows
from grok_cli.analysis.pathways.routing import capture


def tiny_olmoe(seed: int = 0, layers: int = 2, experts: int = 8) -> OlmoeForCausalLM:
    config = OlmoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         num_experts=experts, num_experts_per_tok=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None,
                         # a wide init makes routers peaked, so pathways have no near-ties
                         initializer_range=0.5)
    torch.manual_seed(seed)
    return OlmoeForCausalLM(config).eval()


# ---- pathways and thresholds ----

def test_layer_pathway_sorts_and_stops_at_threshold() -> None:
    assert metrics.layer_pathway(np.array([0.1, 0.5, 0.15, 0.25]), 0.7) == [1, 3]
    assert metrics.layer_pathway(np.array([0.1, 0.5, 0.15, 0.25]), 0.76) == [1, 3, 2]


def test_layer_pathway_exact_equality_reaches_threshold() -> None:
    # 0.5 + 0.2 is exactly the threshold: two experts, not three
    assert metrics.layer_pathway(np.array([0.2, 0.5, 0.3]), 0.8) == [1, 2]
    assert metrics.layer_pathway(np.array([0.5, 0.2, 0.1, 0.2]), 0.7) == [0, 1]
    # fp32 rounding a hair below the threshold still counts as reaching it
    assert metrics.layer_pathway(np.array([0.5, 0.2 - 1e-8, 0.3 + 1e-8]), 0.7) == [0, 2]


def test_layer_pathway_ties_prefer_lower_index() -> None:
    assert metrics.layer_pathway(np.array([0.25, 0.25, 0.25, 0.25]), 0.5) == [0, 1]
    assert metrics.layer_pathway(np.array([0.1, 0.3, 0.3, 0.3]), 0.6) == [1, 2]
    assert metrics.layer_pathway(np.array([0.1, 0.3, 0.3, 0.3]), 1.0) == [1, 2, 3, 0]


def test_pathway_strings() -> None:
    pathway = [[3, 1, 5], [0, 12]]
    assert metrics.pathway_string(pathway, "char") == "3,1,5-0,12"
    # expert k is the one character chr(0x100 + k); layers are joined by "|"
    assert metrics.pathway_string(pathway, "expert") == "\u0103\u0101\u0105|\u0100\u010c"


def test_d_path_all_pairs_char_and_expert_units() -> None:
    pathways = [[[1, 2], [3]], [[1, 2], [3]], [[1], [13]]]
    # char strings "1,2-3", "1,2-3", "1-13": distances 0, 3, 3
    result = metrics.d_path(pathways, "char")
    assert result["n_pairs"] == 3
    assert result["d_path_mean"] == pytest.approx(2.0)
    assert result["d_path_std"] == pytest.approx(math.sqrt(2.0))
    assert result["d_path_layer_0"] == pytest.approx((0 + 2 + 2) / 3)  # "1,2" vs "1"
    assert result["d_path_layer_1"] == pytest.approx((0 + 1 + 1) / 3)  # "3" vs "13"
    # expert unit: [1,2|3] vs [1|13]: drop 2, substitute 3 -> 13: 2 edits
    assert metrics.d_path(pathways, "expert")["d_path_mean"] == pytest.approx((0 + 2 + 2) / 3)


def test_routing_smoothness_hand_computed() -> None:
    # W_l rows are expert embeddings; g picks them so r = e_x, then e_x, then (e_x + e_y)/2
    router_weights = np.array([[[1.0, 0.0], [0.0, 1.0]]] * 3)
    g = np.array([[[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]]])
    consistency, complexity = metrics.routing_smoothness(g, router_weights)
    cosines = [1.0, 1 / math.sqrt(2)]
    assert consistency[0] == pytest.approx(np.mean(cosines))
    assert complexity[0] == pytest.approx(1 - np.mean(cosines) / (1.0 + 1e-8))


# ---- memorization and correlations ----

def test_memorization_index_on_a_loss_table() -> None:
    losses = np.array([
        [2.0, 0.3, 0.10, 0.10],  # memorized from checkpoint 1
        [0.1, 0.1, 0.10, 0.10],  # from the start
        [0.1, 0.9, 0.10, 0.10],  # a relapse: only from checkpoint 2
        [2.0, 0.45, 0.3, 0.20],  # checkpoint 1 is 0.25 away from the final loss: from 2
        [2.0, 2.0, 2.00, 0.60],  # final loss above epsilon: never
    ])
    got = metrics.memorization_index(losses, epsilon=0.5, delta=0.2)
    assert got.tolist() == [1, 0, 2, 2, -1]


def test_moving_average_is_trailing() -> None:
    assert metrics.moving_average(np.array([3.0, 1.0, 2.0, 6.0]), 2).tolist() == [3, 2, 1.5, 4]


def test_correlations_hand_computed() -> None:
    rows = [{"checkpoint": f"c{t}", "group": "all", "d_path_mean": d, "consistency_mean": c,
             "complexity_mean": 0.5, "loss_mean": loss}
            for t, (d, c, loss) in enumerate([(3.0, 0.1, 1.0), (2.0, 0.2, 3.0), (1.0, 0.4, 2.0)])]
    add_accuracy(rows, {"": {"c0": 0.2, "c1": 0.4, "c2": 0.6}}, loss_window=2)
    table = {r["metric"]: r for r in correlation_rows(rows)}
    assert table["d_path"]["pearson"] == pytest.approx(-1.0)
    assert table["d_path"]["spearman"] == pytest.approx(-1.0)
    # consistency (0.1, 0.2, 0.4) vs accuracy (0.2, 0.4, 0.6): deviations (-4, -1, 5)/30
    # and (-1, 0, 1)/5, so r = 9 / sqrt(42 * 2)
    assert table["consistency"]["pearson"] == pytest.approx(9 / math.sqrt(42 * 2))
    assert table["consistency"]["spearman"] == pytest.approx(1.0)
    assert math.isnan(table["complexity"]["pearson"])  # constant: undefined
    assert [r["loss_ma"] for r in rows] == [1.0, 2.0, 2.5]
    assert table["loss"]["n"] == 3


# ---- routing capture on a tiny model ----

def direct_routing(model: OlmoeForCausalLM, ids: torch.Tensor) -> tuple[np.ndarray, float]:
    """One unpadded sample through output_router_logits (no hooks): g (layers, experts), loss."""
    with torch.no_grad():
        out = model(input_ids=ids[None], output_router_logits=True)
    g = np.stack([torch.softmax(logits.float(), -1).mean(0).numpy()
                  for logits in out.router_logits])
    log_probs = torch.log_softmax(out.logits[0, :-1].float(), -1)
    loss = -log_probs[torch.arange(len(ids) - 1), ids[1:]].mean().item()
    return g, loss


def test_capture_batched_with_padding_matches_one_at_a_time() -> None:
    model = tiny_olmoe()
    generator = torch.Generator().manual_seed(0)
    sequences = [torch.randint(2, 64, (n,), generator=generator) for n in (5, 11, 3, 8, 11, 2)]
    routing = capture(model, sequences, batch_size=4)
    assert routing.g.shape == (6, 2, 8)
    assert routing.router_weights.shape == (2, 8, 32)
    for i, ids in enumerate(sequences):
        g, loss = direct_routing(model, ids)
        np.testing.assert_allclose(routing.g[i], g, atol=1e-5)
        assert routing.loss[i] == pytest.approx(loss, abs=1e-4)
        assert (metrics.pathway_string(metrics.sample_pathways(routing.g[i:i + 1], 0.7)[0])
                == metrics.pathway_string(metrics.sample_pathways(g[None], 0.7)[0]))
    gate = model.model.layers[1].mlp.gate  # transformers' OlmoeTopKRouter
    np.testing.assert_array_equal(routing.router_weights[1], gate.weight.detach().numpy())


def test_capture_last_token_loss() -> None:
    model = tiny_olmoe(seed=1)
    ids = torch.tensor([5, 9, 17, 33])
    routing = capture(model, [ids, torch.tensor([4, 8])], batch_size=2, loss_tokens="last")
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0]
    expected = -torch.log_softmax(logits[-2].float(), -1)[33].item()
    assert routing.loss[0] == pytest.approx(expected, abs=1e-4)


# ---- D_path at scale: distinct strings only, sampled pairs with a standard error ----

def naive_pair_distances(strings: list[str]) -> np.ndarray:
    """Every pair i < j by a plain double loop (no cdist, no deduplication)."""
    from rapidfuzz.distance import Levenshtein
    return np.array([Levenshtein.distance(strings[i], strings[j])
                     for i in range(len(strings)) for j in range(i + 1, len(strings))], float)


def test_d_path_deduplicated_exact_equals_double_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    pool = ["".join(rng.choice(list("0123,-"), size=rng.integers(3, 30))) for _ in range(9)]
    strings = [pool[i] for i in rng.integers(0, len(pool), size=47)]  # many repeats
    seen: list[int] = []
    cdist = metrics._cdist
    monkeypatch.setattr(metrics, "_cdist",
                        lambda q, c, w: seen.append(len(q) * len(c)) or cdist(q, c, w))
    monkeypatch.setattr(metrics, "CDIST_BLOCK", 4)  # several blocks, a ragged last one
    result = metrics.mean_pair_distance(strings)
    direct = naive_pair_distances(strings)
    assert result.pairs == 47 * 46 // 2 == len(direct)
    assert result.mean == pytest.approx(direct.mean(), rel=1e-12)
    assert result.std == pytest.approx(direct.std(), rel=1e-12)
    assert result.se == 0.0
    # only the distinct strings were compared: 9 x 9 distances at most, not 47 x 47
    assert sum(seen) <= len(set(strings)) ** 2


def test_d_path_sampled_within_its_standard_error() -> None:
    rng = np.random.default_rng(6)
    strings = ["".join(rng.choice(list("0123456789,-"), size=rng.integers(20, 60)))
               for _ in range(80)]
    direct = naive_pair_distances(strings)
    truth = direct.mean()
    errors, ses = [], []
    for seed in range(300):
        sampled = metrics.mean_pair_distance(strings, max_pairs=400, seed=seed)
        assert sampled.pairs == 400
        if seed == 0:  # seeded: the same pairs again
            assert metrics.mean_pair_distance(strings, max_pairs=400, seed=0) == sampled
        errors.append(abs(sampled.mean - truth))
        ses.append(sampled.se)
    errors, ses = np.array(errors), np.array(ses)
    # the reported error is the standard error of a mean of 400 independent pairs ...
    assert np.median(ses) == pytest.approx(direct.std() / math.sqrt(400), rel=0.1)
    # ... so the exact value lies within 1 and 2 of them about 68% and 95% of the time
    assert 0.60 <= np.mean(errors <= ses) <= 0.76
    assert np.mean(errors <= 2 * ses) >= 0.92
    assert np.mean(errors <= 3 * ses) >= 0.99


def test_d_path_sampled_only_past_max_distinct_pairs() -> None:
    # 200 samples but 3 distinct strings: 3 pairs of distinct strings, exact at max_pairs=3
    strings = ["aaa", "ab", "b"] * 66 + ["aaa", "ab"]
    exact = metrics.mean_pair_distance(strings, max_pairs=3)
    assert exact.pairs == 200 * 199 // 2 and exact.se == 0.0
    assert exact.mean == pytest.approx(naive_pair_distances(strings).mean())
    assert metrics.mean_pair_distance(strings, max_pairs=2).pairs == 2


# ---- memorization.epsilon=auto ----

def test_epsilon_auto_memorizes_20_to_25_percent_per_group() -> None:
    from omegaconf import OmegaConf

    from grok_cli.analysis.pathways.aggregate import memorize
    from grok_cli.analysis.pathways.samples import Samples

    rng = np.random.default_rng(7)
    final = {"web": rng.permutation(np.arange(1, 41) / 10),  # 40 distinct losses 0.1 .. 4.0
             "code": np.array([0.5] * 10 + [1.0] * 30),  # ties: 10 samples at 0.5 -> 25%
             "math": np.array([0.3, 0.1, 0.2])}  # 20-25% of 3 is impossible: 1 of 3
    groups = [g for g, losses in final.items() for _ in losses]
    last = np.concatenate(list(final.values()))
    losses = np.stack([last + 3.0, last + 1.0, last], axis=1)  # 3 checkpoints, falling
    samples = Samples([str(i) for i in range(len(groups))], groups, [], "all")
    result = memorize(samples, losses, OmegaConf.create({"epsilon": "auto", "delta": 0.5}))
    # web: 22.5% of 40 is 9 samples: halfway between the 9th and 10th smallest losses
    assert result.epsilon["web"] == pytest.approx(0.95)
    assert result.epsilon["code"] == pytest.approx(0.75)
    assert result.epsilon["math"] == pytest.approx(0.15)
    assert result.fraction == {"web": 9 / 40, "code": 10 / 40, "math": 1 / 3}
    for group, losses_of_group in final.items():
        members = [i for i, g in enumerate(groups) if g == group]
        memorized = np.mean(losses_of_group <= result.epsilon[group])
        assert memorized == result.fraction[group]
        if group != "math":
            assert 0.20 <= memorized <= 0.25
        # memorized at the last checkpoint only: earlier losses are more than delta above
        expected = np.where(losses_of_group <= result.epsilon[group], 2, -1)
        assert np.array_equal(result.memorized_at[members], expected)
    assert (result.memorized_at == 2).sum() == 9 + 10 + 1


# ---- batch size ----

def test_routing_is_the_same_for_any_batch_size() -> None:
    """Right padding under a causal mask: a sample's routing and loss do not depend on what
    shares its forward pass (to float32 rounding), so moe.batch_size=auto may follow the model."""
    generator = torch.Generator().manual_seed(3)
    sequences = [torch.randint(2, 64, (int(n),), generator=generator)
                 for n in torch.randint(1, 14, (37,), generator=generator)]
    model = tiny_olmoe(1, layers=3)
    one = capture(model, sequences, 1)
    for batch in (5, 16, 512):
        other = capture(model, sequences, batch)
        np.testing.assert_allclose(other.g, one.g, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(other.loss, one.loss, rtol=1e-5, equal_nan=True)
        assert metrics.sample_pathways(other.g, 0.7) == metrics.sample_pathways(one.g, 0.7)


@pytest.mark.parametrize(("parameters", "expected"), [
    (90_080, 512),         # experiment=olmoe_modadd
    (466_496, 512),        # experiment=pathways_testbed: 2^30 / 466,496 = 2,301 -> at most 512
    (13_045_824, 64),      # 16 layers x 64 experts of 64 x 64: 2^30 / 13.0M = 82.3 -> 64
    (6_919_161_856, 8),    # OLMoE-1B-7B: at least 8
])
def test_auto_batch_size_follows_the_model(parameters, expected) -> None:
    from omegaconf import OmegaConf

    from grok_cli.analysis.pathways.config import batch_size

    assert batch_size(OmegaConf.create({"batch_size": "auto"}), parameters) == expected
    assert batch_size(OmegaConf.create({"batch_size": 3}), parameters) == 3


def test_vectorized_pathways_equal_one_layer_at_a_time() -> None:
    rng = np.random.default_rng(0)
    g = rng.dirichlet(np.full(8, 0.3), size=(50, 4))
    g[0, 0] = [0.5, 0.2, 0.3, 0, 0, 0, 0, 0]  # reaches 0.7 exactly with ties at 0
    g[1, 1] = np.full(8, 1 / 8)  # ties everywhere
    for threshold in (0.5, 0.7, 1.0):
        assert metrics.sample_pathways(g, threshold) == [
            [metrics.layer_pathway(layer, threshold) for layer in sample] for sample in g]
