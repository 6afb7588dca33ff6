"""Benchmark D_path at the paper's scale: 2,000 samples of a 16-layer, 64-expert model.

Synthetic routing: per layer, token-averaged softmax weights drawn around a few shared
"popular" experts; --scale 1.0 gives ~630-character pathway strings at threshold 0.7 (OLMoE's
are several hundred). The variants run alternately, --rounds times, so a noisy shared machine
slows them alike; the script prints each variant's median time, its speed-up over exact all pairs,
and the sampled estimates' error against the exact value. Usage:

    python scripts/bench_dpath.py [--samples 2000] [--scale 1.0] [--rounds 3] [--max-pairs 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from grok_cli.analysis.pathways.metrics import (
    Pathway,
    d_path,
    layer_string,
    mean_pair_distance,
    pathway_string,
    sample_pathways,
)


def synthetic_routing(samples: int, layers: int, experts: int, scale: float,
                      seed: int) -> np.ndarray:
    """Routing weights (samples, layers, experts): softmax of shared + per-sample logits."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(1, layers, experts)) * scale
    logits = shared + rng.normal(size=(samples, layers, experts)) * scale
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def variants(pathways: list[Pathway], max_pairs: int) -> dict[str, Callable[[], dict]]:
    """What `grok pathways` computes per group (whole string + every layer), and its parts."""
    whole = [pathway_string(p) for p in pathways]
    layers = [[layer_string(p[layer]) for p in pathways] for layer in range(len(pathways[0]))]
    return {
        "exact, char (whole + layers)": lambda: d_path(pathways, "char", None),
        "  exact whole string only": lambda: {"d_path_mean": mean_pair_distance(whole).mean},
        "  exact layers only": lambda: {"d_path_mean": sum(mean_pair_distance(s).mean
                                                           for s in layers)},
        f"sampled {max_pairs:,} pairs, char": lambda: d_path(pathways, "char",
                                                                     max_pairs),
        "exact, unit=expert": lambda: d_path(pathways, "expert", None),
        f"sampled {max_pairs:,} pairs, unit=expert": lambda: d_path(pathways, "expert",
                                                                  max_pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-pairs", type=int, default=20_000)  # pathway.max_pairs default
    args = parser.parse_args()

    g = synthetic_routing(args.samples, args.layers, args.experts, args.scale, seed=0)
    pathways = sample_pathways(g, args.threshold)
    lengths = [len(pathway_string(p)) for p in pathways]
    print(f"samples={args.samples} layers={args.layers} experts={args.experts} "
          f"pairs={args.samples * (args.samples - 1) // 2:,}; pathway string: mean "
          f"{np.mean(lengths):.0f} chars (unit=expert: "
          f"{np.mean([len(pathway_string(p, 'expert')) for p in pathways]):.0f}), "
          f"{len(set(map(pathway_string, pathways)))} distinct")

    runs = variants(pathways, args.max_pairs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    report(times, results)


def report(times: dict[str, list[float]], results: dict[str, dict]) -> None:
    names = list(times)
    reference = statistics.median(times[names[0]])
    exact = {"char": results[names[0]]["d_path_mean"],
             "expert": results["exact, unit=expert"]["d_path_mean"]}
    print(f"{'variant':44s} {'median s':>9s} {'runs':>22s} {'speed-up':>9s}  D_path")
    for name in names:
        median = statistics.median(times[name])
        runs = " ".join(f"{t:.2f}" for t in times[name])
        result = results[name]
        line = f"{name:44s} {median:9.2f} {runs:>22s} {reference / median:8.1f}x"
        if "d_path_se" in result:
            truth = exact["expert" if "expert" in name else "char"]
            line += (f"  {result['d_path_mean']:.3f} ± {result['d_path_se']:.3f} "
                     f"(se {result['d_path_se'] / result['d_path_mean']:.3%} of the mean; "
                     f"off exact by {abs(result['d_path_mean'] - truth):.3f})")
        print(line)


if __name__ == "__main__":
    main()
