"""Benchmark the trainer against the reference grokking loop, and batched sweeps.

Reference: the loop a user would write from the Critical Data Size recipe: HF
`OpenAIGPTLMHeadModel`, the full 7-token sequence through the LM head with labels -100 except
the answer, full batch, `loss.backward()`, AdamW, the whole test set evaluated and `.item()`
every step. grok: the project's trainer on `experiment=cds_modadd train_size=2000
eval_every=10`, the same steps. Each measurement runs in its own process (peak memory is the
process's), the two alternate, and the median steps/s of each is reported.

    python scripts/bench.py [--steps 30] [--rounds 2] [--json bench.json]
    python scripts/bench.py --batched [--batched-steps 4000] [--json bench_batched.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from grok_cli.cli import conf_dir

RECIPE = ["experiment=cds_modadd", "train_size=2000", "eval_every=10", "progress=log"]


def compose_run(*overrides: str) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(config_name="run", overrides=list(overrides))


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def matmul_flops(device: torch.device, n: int = 1024, seconds: float = 2.0) -> float:
    """Dense fp32 matmul FLOP/s of this machine (2 n^3 per product)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * done / (time.perf_counter() - start)


def reference_worker(steps: int) -> dict:
    """The paper's loop, written plainly (see the module docstring)."""
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    from grok_cli.tasks import build_task

    cfg = compose_run(*RECIPE)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    task = build_task(cfg, device)
    train_ids = torch.cat([task.train.x, task.train.y[:, None]], 1)  # `a + b % 113 = c`
    test_ids = torch.cat([task.test.x, task.test.y[:, None]], 1)
    train_labels = torch.full_like(train_ids, -100)
    train_labels[:, -1] = train_ids[:, -1]
    test_labels = torch.full_like(test_ids, -100)
    test_labels[:, -1] = test_ids[:, -1]
    model = OpenAIGPTLMHeadModel(OpenAIGPTConfig(
        vocab_size=task.vocab_size, n_positions=128, n_embd=128, n_layer=1, n_head=4,
        afn="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98),
                                  weight_decay=1.0)
    start = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=train_ids, labels=train_labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        train_acc = (out.logits[:, -2].argmax(-1) == train_ids[:, -1]).float().mean()
        with torch.no_grad():
            test = model(input_ids=test_ids, labels=test_labels)
            test_acc = (test.logits[:, -2].argmax(-1) == test_ids[:, -1]).float().mean()
        _ = (out.loss.item(), train_acc.item(), test.loss.item(), test_acc.item())
    elapsed = time.perf_counter() - start
    return {"steps_per_s": steps / elapsed, "peak_mib": peak_memory_mib(device)}


def grok_worker(steps: int) -> dict:
    from grok_cli.runfolder.metrics import read_metrics
    from grok_cli.training.trainer import train

    cfg = compose_run(*RECIPE, f"steps={steps}", "ckpt_every=100000")
    with tempfile.TemporaryDirectory() as tmp:
        outcome = train(cfg, Path(tmp))
        rows = read_metrics(Path(tmp) / "metrics.csv")
    device = torch.device(outcome.device)
    model_params = _parameters(cfg)
    return {"steps_per_s": steps / rows[-1]["elapsed_s"], "peak_mib": peak_memory_mib(device),
            "parameters": model_params, "tokens_per_step": len(outcome.task.train) * 6,
            "final_train_loss": rows[-1]["train_loss"]}


def _parameters(cfg: DictConfig) -> int:
    from grok_cli.models import build_model
    from grok_cli.tasks import build_task

    model = build_model(cfg.model, build_task(cfg))
    return sum(p.numel() for p in model.parameters())


def run_worker(kind: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, "--steps", str(steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_trainer(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops = matmul_flops(device)
    results: dict[str, list[dict]] = {"reference": [], "grok": []}
    for _ in range(args.rounds):  # alternate, so a change in machine load hits both
        for kind in results:
            results[kind].append(run_worker(kind, args.steps))
    ref = statistics.median(r["steps_per_s"] for r in results["reference"])
    grok = statistics.median(r["steps_per_s"] for r in results["grok"])
    last = results["grok"][-1]
    achieved = 6 * last["parameters"] * last["tokens_per_step"] * grok
    report = {
        "device": str(device), "threads": torch.get_num_threads(), "steps": args.steps,
        "rounds": args.rounds, "load_average": os.getloadavg(),
        "matmul_flops": flops, "reference_steps_per_s": ref, "grok_steps_per_s": grok,
        "speedup": grok / ref, "grok_flops": achieved, "grok_flops_share": achieved / flops,
        "reference_peak_mib": max(r["peak_mib"] for r in results["reference"]),
        "grok_peak_mib": max(r["peak_mib"] for r in results["grok"]), "runs": results,
    }
    print(f"device {device}, {report['threads']} threads, load average "
          f"{', '.join(f'{v:.2f}' for v in report['load_average'])}; matmul "
          f"{flops / 1e9:.1f} GFLOP/s")
    print(f"{'loop':<10} {'steps/s':>9} {'peak MiB':>9}")
    print(f"{'reference':<10} {ref:>9.3f} {report['reference_peak_mib']:>9.0f}")
    print(f"{'grok':<10} {grok:>9.3f} {report['grok_peak_mib']:>9.0f}")
    print(f"speedup {grok / ref:.2f}x; grok achieves {achieved / 1e9:.2f} GFLOP/s "
          f"(6 x {last['parameters']} params x {last['tokens_per_step']} tokens/step) = "
          f"{100 * achieved / flops:.1f}% of matmul")
    return report


SIZES, SEEDS = (250, 350, 450, 600, 720), (0, 1)  # 10 members of the cds_modadd_cpu grid


def grok_sweep(*overrides: str) -> float:
    """Wall seconds of one `grok sweep sweep=cds_modadd_cpu ...` process, as a user runs it."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grok_cli.cli", "sweep", "sweep=cds_modadd_cpu",
                    "progress=log", *overrides], check=True, capture_output=True)
    return time.perf_counter() - start


def bench_batched(args: argparse.Namespace) -> dict:
    """The cds_modadd_cpu sweep's model, 10 members (5 train sizes x 2 seeds), three ways, all
    through the CLI: 10 separate processes one after another (a shell loop of single runs),
    one `grok sweep launcher=basic` (in-process, one after another) and one
    `grok sweep launcher=batched`. The two sweeps write the same job folders, compared."""
    from grok_cli.runfolder.runs import metric_arrays

    steps = f"steps={args.batched_steps}"
    grid = [f"train_size={','.join(map(str, SIZES))}", f"seed={','.join(map(str, SEEDS))}"]
    root = Path(tempfile.mkdtemp(prefix="grok-bench-"))
    try:
        separate = sum(grok_sweep(steps, "launcher=basic", f"train_size={size}",
                                  f"seed={seed}", f"hydra.sweep.dir={root / 'separate'}")
                       for size in SIZES for seed in SEEDS)
        basic = grok_sweep(steps, "launcher=basic", *grid, f"hydra.sweep.dir={root / 'basic'}")
        batched = grok_sweep(steps, "launcher=batched", *grid,
                             f"hydra.sweep.dir={root / 'batched'}")
        members = []
        for job in sorted(p.parent for p in (root / "basic").glob("*/metrics.csv")):
            one, together = (metric_arrays(root / kind / job.name) for kind in ("basic",
                                                                                "batched"))
            early = one["step"] <= 200
            summaries = [json.loads((root / kind / job.name / "summary.json").read_text())
                         for kind in ("basic", "batched")]
            members.append({
                "job": " ".join(re.findall(r"(?:seed|train_size)=\d+", job.name)),
                "max_loss_diff_steps_le_200": max(
                    float(np.abs(one[c][early] - together[c][early]).max())
                    for c in ("train_loss", "test_loss")),
                **{f"{key}_{kind}": summary[key] for kind, summary in zip(
                    ("unbatched", "batched"), summaries, strict=True)
                   for key in ("memorization_step", "generalization_step",
                               "converged_test_acc")}})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"members": len(SIZES) * len(SEEDS), "steps": args.batched_steps,
              "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "separate_processes_s": separate, "sweep_basic_s": basic, "sweep_batched_s": batched,
              "ratio_vs_separate": separate / batched, "ratio_vs_basic": basic / batched,
              "per_member": members}
    print(f"cds_modadd_cpu, {report['members']} members, {args.batched_steps} steps, "
          f"{report['threads']} threads")
    print(f"{'way':<34} {'wall s':>8} {'batched is':>11}")
    for name, seconds in (("10 processes one after another", separate),
                          ("grok sweep launcher=basic", basic),
                          ("grok sweep launcher=batched", batched)):
        print(f"{name:<34} {seconds:>8.1f} {seconds / batched:>10.2f}x")
    for m in members:
        print(f"  {m['job']}: max |loss diff| (steps <= 200) "
              f"{m['max_loss_diff_steps_le_200']:.1e}; memorized/generalized "
              f"{m['memorization_step_unbatched']}/{m['generalization_step_unbatched']} "
              f"unbatched vs {m['memorization_step_batched']}/"
              f"{m['generalization_step_batched']} batched")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batched", action="store_true", help="benchmark batched sweeps")
    parser.add_argument("--batched-steps", type=int, default=4000,
                        help="steps per member (the cds_modadd_cpu preset's 4000)")
    parser.add_argument("--json", type=Path,
                        help="report file (default bench.json, or bench_batched.json)")
    parser.add_argument("--worker", choices=["reference", "grok"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker = reference_worker if args.worker == "reference" else grok_worker
        print(json.dumps(worker(args.steps)))
        return
    report = bench_batched(args) if args.batched else bench_trainer(args)
    path = args.json or Path("bench_batched.json" if args.batched else "bench.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
