"""Whole `grok pathways` and `grok fourier` commands, quiet and beside two busy processes.

Each measurement is one `grok` process, timed from start to exit (imports included). The
conditions alternate round by round (quiet, busy, busy, quiet, ...), so a machine whose load
drifts slows both alike; the busy processes (pure-Python loops, one core each) are started
before a busy measurement, each in its own session (see start_busy), and stopped by their PID
after it. The script prints every time with
the 1-minute load average read just before it, then each command's medians and the ratio
busy / quiet.

Fixtures, built once into --workdir (small and local, no hub):
- pathways: one checkpoint of an OLMoE of 16 layers x 64 experts (OlmoeConfig, random init)
  and 2,000 samples of 8-16 tokens (`data.path`, `input_ids`);
- fourier: a run of `experiment=nanda_p113` with 51 snapshots (`grok run steps=500
  save_every=10`).

    python scripts/bench_analyses.py [--rounds 3] [--busy 2] [--workdir DIR] [--json FILE]
        [--only pathways|fourier] [--baseline SRC] [-- extra overrides for every command]

--baseline SRC times another source tree too (run from SRC), alternating with this one:
    git archive main | tar -x -C /tmp/grok_main && python scripts/bench_analyses.py \
        --baseline /tmp/grok_main
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY_LOOP = "while True: pass"
SAMPLES, MIN_TOKENS, MAX_TOKENS, VOCAB = 2000, 8, 16, 1024
FOURIER_STEPS, SAVE_EVERY = 500, 10  # 51 snapshots: steps 0, 10, ..., 500


def build_pathways(root: Path) -> list[str]:
    """One OLMoE checkpoint (16 layers x 64 experts) and 2,000 samples; the command's args."""
    folder, data = root / "olmoe_16x64", root / "samples.jsonl"
    if not (folder / "config.json").is_file():
        import torch
        from transformers import OlmoeConfig, OlmoeForCausalLM

        config = OlmoeConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=64,
                             num_hidden_layers=16, num_attention_heads=4,
                             num_key_value_heads=4, num_experts=64, num_experts_per_tok=8,
                             max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                             bos_token_id=None, initializer_range=0.18)
        torch.manual_seed(0)
        OlmoeForCausalLM(config).eval().save_pretrained(folder)
    if not data.is_file():
        import numpy as np

        rng = np.random.default_rng(0)
        with data.open("w") as handle:
            for i in range(SAMPLES):
                ids = rng.integers(2, VOCAB, size=rng.integers(MIN_TOKENS, MAX_TOKENS + 1))
                handle.write(json.dumps({"id": i, "input_ids": ids.tolist()}) + "\n")
    return ["pathways", f"moe.checkpoints=[{folder}]", f"data.path={data}"]


def build_fourier(root: Path) -> list[str]:
    """A nanda_p113 run with 51 snapshots; the command's args."""
    run = root / "nanda_p113"
    if not (run / "checkpoints" / f"step_{FOURIER_STEPS}.pt").is_file():
        subprocess.run([sys.executable, "-m", "grok_cli.cli", "run", "experiment=nanda_p113",
                        f"steps={FOURIER_STEPS}", f"save_every={SAVE_EVERY}", "eval_every=10",
                        "progress=log", f"hydra.run.dir={run}"], check=True,
                       stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    return ["fourier", f"run_dir={run}"]


def load() -> float:
    return os.getloadavg()[0]


def start_busy(count: int) -> list[subprocess.Popen]:
    """Busy processes, each in a session of its own, as another user's job is. Linux's
    autogroup scheduling shares the CPU between sessions first: busy loops in the benchmark's
    own session would take their share from the command's session, and measure that (3x on
    this machine whatever the threads), not the command beside other jobs."""
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
            for _ in range(count)]
    time.sleep(1.0)  # running, and seen by the scheduler, before the command starts
    return busy


def stop_busy(busy: list[subprocess.Popen]) -> None:
    for process in busy:
        os.kill(process.pid, signal.SIGTERM)
    for process in busy:
        process.wait()


def timed(args: list[str], out: Path, source: Path) -> float:
    """Seconds of one `grok` process run from the source tree `source` (python -m imports
    grok_cli from the working folder first)."""
    # The environment's own thread settings would hide what threads=auto picks.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH")}
    env["HF_HUB_OFFLINE"] = "1"
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grok_cli.cli", *args, f"hydra.run.dir={out}"],
                   check=True, env=env, cwd=source, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def measure(name: str, command: list[str], workdir: Path, busy_count: int, rounds: int,
            sources: dict[str, Path]) -> dict:
    """Every (code, condition) of one command, alternating within each round, reversed every
    other round; medians of the seconds and of the load before each."""
    cases = [(code, condition) for code in sources for condition in ("quiet", "busy")]
    seen: dict[tuple[str, str], list[dict[str, float]]] = {case: [] for case in cases}
    for round_ in range(rounds):
        for code, condition in cases if round_ % 2 == 0 else cases[::-1]:
            busy = start_busy(busy_count) if condition == "busy" else []
            try:
                before = load()
                seconds = timed(command, workdir / f"out_{name}_{code}_{condition}",
                                sources[code])
            finally:
                stop_busy(busy)
            seen[code, condition].append({"seconds": seconds, "load": before})
            print(f"{name} round {round_} {code} {condition}: {seconds:.1f} s "
                  f"(load {before:.2f})", flush=True)
            time.sleep(2.0)  # the busy processes' load fades a little before the next one
    result = {}
    for code in sources:
        medians = {c: statistics.median(m["seconds"] for m in seen[code, c])
                   for c in ("quiet", "busy")}
        loads = {c: statistics.median(m["load"] for m in seen[code, c])
                 for c in ("quiet", "busy")}
        ratio = medians["busy"] / medians["quiet"]
        result[code] = {"runs": {c: seen[code, c] for c in ("quiet", "busy")},
                        "median_s": medians, "median_load": loads, "busy_over_quiet": ratio}
        print(f"{name} ({code}): quiet {medians['quiet']:.1f} s (load {loads['quiet']:.2f}), "
              f"beside {busy_count} busy {medians['busy']:.1f} s (load {loads['busy']:.2f}): "
              f"{ratio:.2f}x", flush=True)
    return result


def main() -> None:
    # A `kill PID` of this script stops its busy processes too (the finally around each).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside a command")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "grok_bench_analyses")
    parser.add_argument("--only", choices=("pathways", "fourier"))
    parser.add_argument("--baseline", type=Path,
                        help="another source tree of grok (e.g. `git archive` of main) timed "
                             "alternately with this one, on the same fixtures")
    parser.add_argument("--json", type=Path)
    parser.add_argument("overrides", nargs="*", help="added to every command, e.g. threads=2")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    commands = {"pathways": build_pathways, "fourier": build_fourier}
    if args.only:
        commands = {args.only: commands[args.only]}
    commands = {name: build(args.workdir) + args.overrides for name, build in commands.items()}
    sources = {"this": Path(__file__).resolve().parents[1]}
    if args.baseline:
        sources["baseline"] = args.baseline.resolve()
    report: dict = {"cpu_count": os.cpu_count(), "rounds": args.rounds, "busy": args.busy,
                    "overrides": args.overrides, "baseline": str(args.baseline or ""),
                    "load_at_start": os.getloadavg(), "commands": {}}
    print(f"{os.cpu_count()} CPUs, {args.busy} busy processes, {args.rounds} rounds; "
          f"load average now {os.getloadavg()}", flush=True)
    for name, command in commands.items():
        report["commands"][name] = measure(name, command, args.workdir, args.busy, args.rounds,
                                           sources)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
