"""Benchmark D_path: all pairs of 2,000 samples of a 16-layer, 64-expert model (~2 M pairs).

Synthetic routing: per layer, token-averaged softmax weights drawn around a few shared
"popular" experts, with a spread chosen so pathway strings look like the paper's (D_path in
the hundreds at threshold 0.7). Usage:

    python scripts/bench_dpath.py [--samples 2000] [--layers 16] [--experts 64] [--scale 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from grok_cli.pathways.metrics import d_path, pathway_string, sample_pathways


def synthetic_routing(samples: int, layers: int, experts: int, scale: float,
                      seed: int) -> np.ndarray:
    """Routing weights (samples, layers, experts): softmax of shared + per-sample logits."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(1, layers, experts)) * scale
    logits = shared + rng.normal(size=(samples, layers, experts)) * scale
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--scale", type=float, default=1.5)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--unit", default="char", choices=["char", "expert"])
    args = parser.parse_args()

    g = synthetic_routing(args.samples, args.layers, args.experts, args.scale, seed=0)
    start = time.perf_counter()
    pathways = sample_pathways(g, args.threshold)
    built = time.perf_counter() - start
    lengths = [len(pathway_string(p, args.unit)) for p in pathways]
    experts_per_layer = np.mean([len(layer) for p in pathways for layer in p])

    start = time.perf_counter()
    result = d_path(pathways, unit=args.unit)
    elapsed = time.perf_counter() - start
    print(f"samples={args.samples} layers={args.layers} experts={args.experts} "
          f"unit={args.unit} pairs={result['n_pairs']:,}")
    print(f"pathway string length: mean {np.mean(lengths):.0f} chars, "
          f"{experts_per_layer:.1f} experts per layer")
    print(f"D_path mean {result['d_path_mean']:.1f} (std {result['d_path_std']:.1f})")
    print(f"pathways built in {built:.2f} s; D_path (whole + {args.layers} layers) "
          f"in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
