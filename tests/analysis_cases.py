"""Small `grok pathways` and `grok fourier` cases whose outputs were captured from the code
before the analyses' speed work (tests/data/analyses_before.json), so any change in how they
compute (threads, batch sizes, work moved out of the per-checkpoint loop) must leave every
number as it was.

    python tests/analysis_cases.py   # rewrites tests/data/analyses_before.json (don't, unless
                                     # the outputs are meant to change)
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

BEFORE = Path(__file__).parent / "data" / "analyses_before.json"
CHECKPOINTS = ["ck0", "ck1", "ck2"]
# Two settings of `grok pathways`: the defaults (char unit, all pairs, fixed epsilon), and the
# other unit, sampled pairs and per-group epsilon.
PATHWAYS_SETTINGS = {
    "defaults": ["memorization.epsilon=100", "memorization.delta=100"],
    "sampled": ["pathway.unit=expert", "pathway.max_pairs=50", "memorization.epsilon=auto",
                "pathway.threshold=0.5"],
}
FOURIER_STEPS = (0, 10, 20, 30)


def tiny_olmoe(seed: int):
    from transformers import OlmoeConfig, OlmoeForCausalLM

    config = OlmoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                         num_experts=8, num_experts_per_tok=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None,
                         initializer_range=0.5)
    torch.manual_seed(seed)
    return OlmoeForCausalLM(config).eval()


def pathways_case(root: Path) -> Path:
    """Three checkpoints, 40 samples of 2-13 tokens in two groups, an accuracy file."""
    for seed, name in enumerate(CHECKPOINTS):
        tiny_olmoe(seed).save_pretrained(root / name)
    generator = torch.Generator().manual_seed(0)
    with (root / "data.jsonl").open("w") as handle:
        for i in range(40):
            length = int(torch.randint(2, 14, (1,), generator=generator))
            ids = torch.randint(2, 64, (length,), generator=generator)
            handle.write(json.dumps({"id": f"s{i}", "group": "code" if i % 3 else "web",
                                     "input_ids": ids.tolist()}) + "\n")
    (root / "acc.csv").write_text("checkpoint,accuracy\nck0,0.1\nck1,0.3\nck2,0.2\n")
    return root


def pathways_args(setting: str, out: Path) -> list[str]:
    return ["pathways", f"moe.checkpoints=[{','.join(CHECKPOINTS)}]", "data.path=data.jsonl",
            "accuracy=acc.csv", "plots=false", *PATHWAYS_SETTINGS[setting],
            f"hydra.run.dir={out}"]


def fourier_case(root: Path) -> Path:
    """A nanda_p113-shaped run at p = 23 with four snapshots: the untrained model and three
    random moves away from it (the measures need not be a trained model's to be compared)."""
    from hydra import compose, initialize_config_dir

    from grok_cli.config import conf_dir
    from grok_cli.models import build_model
    from grok_cli.tasks import build_task

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(config_name="run", overrides=["experiment=nanda_p113", "task.p=23"])
    run = root / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump(OmegaConf.to_container(cfg, resolve=False)))
    (run / "metrics.csv").write_text("step,train_loss,train_acc,test_loss,test_acc\n")
    (run / "checkpoints").mkdir()
    torch.manual_seed(0)
    model = build_model(cfg.model, build_task(cfg, "cpu"))
    for step in FOURIER_STEPS:
        with torch.no_grad():
            for weight in model.parameters():
                weight.add_(0.05 * torch.randn_like(weight))
        torch.save({"model": model.state_dict(), "step": step},
                   run / "checkpoints" / f"step_{step}.pt")
    return run


# Key frequencies found at the last snapshot (none, for these weights), and given.
FOURIER_SETTINGS = {"found": [], "given": ["key_freqs=[2,5,7]"]}


def fourier_args(setting: str, run: Path, out: Path) -> list[str]:
    return ["fourier", f"run_dir={run}", f"out_dir={out}", "plots=false",
            *FOURIER_SETTINGS[setting], f"hydra.run.dir={out}"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def pathways_outputs(out: Path) -> dict:
    summary = json.loads((out / "pathways.json").read_text())
    return {name: read_csv(out / name) for name in
            ("pathways_samples.csv", "pathways.csv", "correlations.csv")} | {
        "memorization": summary["memorization"], "d_path": summary["d_path"]}


def fourier_outputs(out: Path) -> dict:
    report = json.loads((out / "fourier.json").read_text())["runs"][0]
    return {"fourier.csv": read_csv(out / "fourier.csv"),
            **{k: report[k] for k in ("key_frequencies", "found_at_last_snapshot", "spectra")}}


def capture(grok_here) -> dict:
    """Every case's outputs, from `grok` run in this process (grok_here of conftest)."""
    found: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathways_case(Path(tmp) / "pathways")
        for setting in PATHWAYS_SETTINGS:
            out = Path(tmp) / f"out_{setting}"
            grok_here(*pathways_args(setting, out), cwd=root, check=True)
            found[f"pathways_{setting}"] = pathways_outputs(out)
        run = fourier_case(Path(tmp) / "fourier")
        for setting in FOURIER_SETTINGS:
            out = Path(tmp) / f"out_fourier_{setting}"
            grok_here(*fourier_args(setting, run, out), cwd=Path(tmp), check=True)
            found[f"fourier_{setting}"] = fourier_outputs(out)
    return found


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import grok_here

    BEFORE.write_text(json.dumps(capture(grok_here), indent=1, sort_keys=True) + "\n")
    print(f"wrote {BEFORE}")
