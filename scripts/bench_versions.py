"""The same `grok run` from two installs, alternating: is this version as fast as that one?

    python scripts/bench_versions.py --baseline /path/to/other/checkout/.venv/bin/python \
        [--rounds 4] [--steps 400] [-- key=value ...]

Each round runs the recipe (default: scripts/bench.py's, `experiment=cds_modadd
train_size=2000 eval_every=10`) once with this interpreter and once with the baseline's, in
that order on even rounds and the other on odd ones, each in a fresh process and folder. It
reports per version the median steps/s (from summary.json: the training loop alone) and the
median CPU seconds of the whole process (user + system: robust to a loaded machine, which
wall time is not), their ratios this / baseline, and the load average before and after.
Both runs must write the same metrics.csv (elapsed_s aside), else the comparison is void.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

RECIPE = ["experiment=cds_modadd", "train_size=2000", "eval_every=10", "progress=log",
          "threads=1"]


def run_once(python: str, overrides: list[str], folder: Path) -> tuple[float, float]:
    """(steps/s of the loop, CPU seconds of the process) of one `grok run`."""
    pid = os.spawnv(os.P_NOWAIT, python, [python, "-m", "grok_cli.cli", "run", *overrides,
                                          f"hydra.run.dir={folder}"])
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{python}: grok run failed (exit {os.waitstatus_to_exitcode(status)})")
    summary = json.loads((folder / "summary.json").read_text())
    return summary["steps_per_s"], usage.ru_utime + usage.ru_stime


def rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k != "elapsed_s"}
                for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="the other install's python")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("overrides", nargs="*", help="the recipe (default: bench.py's)")
    args = parser.parse_args()
    overrides = (args.overrides or RECIPE) + [f"steps={args.steps}"]
    versions = {"this": sys.executable, "baseline": args.baseline}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(versions) if r % 2 == 0 else list(versions)[::-1]
            for name in order:
                folder = Path(tmp) / f"{name}_{r}"
                results[name].append(run_once(versions[name], overrides, folder))
            if rows(Path(tmp) / f"this_{r}") != rows(Path(tmp) / f"baseline_{r}"):
                sys.exit("the two versions wrote different metrics.csv rows: not the same run")
    med = {name: (statistics.median(s for s, _ in res), statistics.median(c for _, c in res))
           for name, res in results.items()}
    for name, (steps_s, cpu) in med.items():
        print(f"{name:>9}: {steps_s:8.1f} steps/s (median of {args.rounds}), "
              f"{cpu:6.2f} CPU s per run  {[round(s, 1) for s, _ in results[name]]}")
    print(f"this / baseline: steps/s {med['this'][0] / med['baseline'][0]:.3f}, "
          f"CPU s {med['this'][1] / med['baseline'][1]:.3f}; same metrics.csv rows: yes")
    print(f"load average before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()
