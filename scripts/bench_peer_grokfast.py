"""`grok` against the Grokfast authors' own main.py (ironjr/grokfast), one thread each.

Their code is never copied or edited: `--peer` points at a checkout you obtained yourself, and
it runs unmodified from its command-line flags (`runpy`, as `python main.py ...`), in a
process of its own with `--peer-python` (a venv with torch, numpy, tqdm, matplotlib). From
outside, this wrapper only watches: it wraps `torch.nn.functional.cross_entropy` to count the
validation answers that are right (their loop computes the loss on every batch, so every
validation batch passes through it), and the epoch iterator `tqdm` to time the epochs and to
end the loop after the first epoch whose validation accuracy reaches `--target` (the
iteration count then is their `its` entry, 10 updates per epoch). Nothing in their training
changes: the wrappers draw no random numbers and touch no tensor the loop uses.

    # speed: steps/s of both at their cadence (grok evaluates every epoch = 10 steps)
    python scripts/bench_peer_grokfast.py speed --peer /work/peers/grokfast \\
        --peer-python /work/peers/venv/bin/python [--steps 300] [--rounds 3]
    # steps to 95% test accuracy, seeds x filters, both programs (JSON lines to --out)
    python scripts/bench_peer_grokfast.py reach --peer ... --seeds 0 1 2 3 4 \\
        --filters ma ema [--programs peer grok] --out runs.jsonl
    # the baseline (no filter, weight decay 0): --flush-denormal for both, or each slows
    # several-fold once memorized (subnormal softmax probabilities; grok's flush_denormal)
    python scripts/bench_peer_grokfast.py reach ... --filters none --seeds 0 --steps 60000 \\
        --flush-denormal

Each measurement is its own process with OMP_NUM_THREADS=1 (and torch.set_num_threads(1));
the two programs alternate round by round so both see the same machine load, which is
printed (load average) beside every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The paper's filter settings (their README) with the weight decay each is paired with.
FILTERS = {
    "none": {"peer": [], "grok": ["grokfast=none"], "weight_decay": 0.0},
    "ma": {"peer": ["--filter", "ma", "--window_size", "100", "--lamb", "5.0"],
           "grok": ["grokfast=ma", "grokfast.window_size=100", "grokfast.lamb=5.0"],
           "weight_decay": 0.01},
    "ema": {"peer": ["--filter", "ema", "--alpha", "0.98", "--lamb", "2.0"],
            "grok": ["grokfast=ema", "grokfast.alpha=0.98", "grokfast.lamb=2.0"],
            "weight_decay": 0.005},
}
STEPS_PER_EPOCH = 10  # ceil(4,656 / 512)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------- inside the peer's process


def run_peer_inside(peer: Path, argv: list[str], target: float, epochs: int,
                    flush_denormal: bool) -> dict:
    """Run their main.py as `python main.py argv` in this process, watching from outside."""
    import runpy

    import torch
    import torch.nn.functional as F
    import tqdm as tqdm_module

    torch.set_num_threads(1)
    torch.set_flush_denormal(flush_denormal)  # grok's flush_denormal, as the process's mode
    cross_entropy = F.cross_entropy
    seen = {"right": 0, "n": 0}

    def watched_cross_entropy(logits, target_, *args, **kwargs):
        if not torch.is_grad_enabled():  # their validation pass (set_grad_enabled(False))
            seen["right"] += int((logits.argmax(-1) == target_).sum())
            seen["n"] += len(target_)
        return cross_entropy(logits, target_, *args, **kwargs)

    result: dict = {"reached": None, "epochs": 0}

    def watched_epochs(iterable, *args, **kwargs):
        began = time.perf_counter()
        for e in iterable:
            if e >= epochs:
                break
            seen["right"] = seen["n"] = 0
            yield e
            result["epochs"] = e + 1
            result["wall_s"] = time.perf_counter() - began
            if seen["n"] and seen["right"] / seen["n"] >= target:
                result["reached"] = (e + 1) * STEPS_PER_EPOCH  # their its[e]
                result["val_acc"] = seen["right"] / seen["n"]
                break

    F.cross_entropy = watched_cross_entropy
    tqdm_module.tqdm = watched_epochs
    sys.path.insert(0, str(peer))
    sys.argv = [str(peer / "main.py"), *argv]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "results").mkdir()
        os.chdir(tmp)
        runpy.run_path(str(peer / "main.py"), run_name="__main__")
    result["steps"] = result["epochs"] * STEPS_PER_EPOCH
    result["steps_per_s"] = result["steps"] / result["wall_s"]
    return result


# ---------------------------------------------------------------- one run of each program


def peer_run(args: argparse.Namespace, seed: int, filt: str, epochs: int, target: float) -> dict:
    spec = FILTERS[filt]
    argv = ["--seed", str(seed), "--weight_decay", str(spec["weight_decay"]), *spec["peer"],
            "--label", f"bench_s{seed}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [args.peer_python, __file__, "_inside", "--peer", str(args.peer), "--target",
         str(target), "--epochs", str(epochs),
         *(["--flush-denormal"] if args.flush_denormal else []), "--", *argv],
        check=True, env=env, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def grok_run(args: argparse.Namespace, seed: int, filt: str, steps: int,
             target: float | None) -> dict:
    spec = FILTERS[filt]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        subprocess.run(
            [sys.executable, "-m", "grok_cli.cli", "run", "experiment=grokfast_mul97",
             *spec["grok"], f"weight_decay={spec['weight_decay']}", f"seed={seed}",
             f"steps={steps}", f"eval_every={STEPS_PER_EPOCH}", "ckpt_every=100000",
             f"stop.test_acc={'null' if target is None else target}", "progress=log",
             f"flush_denormal={str(args.flush_denormal).lower()}", *args.grok_args,
             f"hydra.run.dir={run}"],
            check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        summary = json.loads((run / "summary.json").read_text())
    return {"reached": summary["generalization_step"], "steps": summary["final"]["step"],
            "steps_per_s": summary["steps_per_s"]}


# ---------------------------------------------------------------- the two benchmarks


def speed(args: argparse.Namespace) -> None:
    """Steps/s of both programs over `--steps` steps (no stop), alternating."""
    seen: dict[str, list[float]] = {"peer": [], "grok": []}
    for round_ in range(args.rounds):
        order = ("peer", "grok") if round_ % 2 == 0 else ("grok", "peer")
        for program in order:
            if program == "peer":
                r = peer_run(args, 0, args.filter, args.steps // STEPS_PER_EPOCH, 2.0)  # no stop
            else:
                r = grok_run(args, 0, args.filter, args.steps, None)
            seen[program].append(r["steps_per_s"])
            print(f"round {round_} {program}: {r['steps_per_s']:.1f} steps/s "
                  f"(load average {load()})", flush=True)
    peer, grok = (statistics.median(seen[k]) for k in ("peer", "grok"))
    print(f"median steps/s: theirs {peer:.1f}, grok {grok:.1f}, grok/theirs {grok / peer:.2f}x "
          f"(filter {args.filter}, {args.steps} steps, evaluation every {STEPS_PER_EPOCH}; "
          f"load average {load()})", flush=True)


def reach(args: argparse.Namespace) -> None:
    """Steps to `--target` test accuracy for seeds x filters, both programs, alternating."""
    for filt in args.filters:
        for seed in args.seeds:
            for program in args.programs:
                began = time.time()
                if program == "peer":
                    r = peer_run(args, seed, filt, args.steps // STEPS_PER_EPOCH, args.target)
                else:
                    r = grok_run(args, seed, filt, args.steps, args.target)
                r.update(program=program, filter=filt, seed=seed,
                         flush_denormal=args.flush_denormal, load=load(),
                         wall_s=round(time.time() - began, 1))
                print(json.dumps(r), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(r) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_inside":
        split = sys.argv.index("--")  # after it: their main.py's own flags
        inner = argparse.ArgumentParser()
        inner.add_argument("--peer", type=Path, required=True)
        inner.add_argument("--target", type=float, required=True)
        inner.add_argument("--epochs", type=int, required=True)
        inner.add_argument("--flush-denormal", action="store_true")
        a = inner.parse_args(sys.argv[2:split])
        result = run_peer_inside(a.peer, sys.argv[split + 1:], a.target, a.epochs,
                                 a.flush_denormal)
        sys.stdout = sys.__stdout__
        print(json.dumps(result), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("speed", "reach"))
    parser.add_argument("--peer", type=Path, required=True, help="a checkout of ironjr/grokfast")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="a Python with torch, numpy, tqdm and matplotlib for their code")
    parser.add_argument("--steps", type=int, default=None,
                        help="speed: steps timed (300); reach: the most steps (50,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--filter", default="ma", choices=FILTERS)
    parser.add_argument("--filters", nargs="+", default=["ma", "ema"], choices=FILTERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--programs", nargs="+", default=["peer", "grok"],
                        choices=("peer", "grok"))
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--out", type=Path, help="reach: append JSON lines here")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="both programs treat subnormal floats as 0 (grok's "
                        "flush_denormal=true; torch.set_flush_denormal in theirs)")
    parser.add_argument("--grok-args", nargs="*", default=[],
                        help="extra `grok run` overrides")
    args = parser.parse_args()
    args.steps = args.steps or (300 if args.mode == "speed" else 50_000)
    (speed if args.mode == "speed" else reach)(args)


if __name__ == "__main__":
    main()
