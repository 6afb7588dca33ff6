"""What conf/ holds, and the checks of the configs' values: each bad value is one GrokError.

The static views (a primary config's groups, choices and top-level keys) read the YAML files
only, so the command line can be checked before Hydra composes anything, and help can be
printed without importing torch.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import grok_cli
from grok_cli.errors import (
    GrokError,
    check,
    check_choice,
    check_positive_int,
    did_you_mean,
    is_int,
    is_number,
)
from grok_cli.threads import check_threads


def conf_dir() -> Path:
    """conf/ inside the installed package (wheel), else the source checkout's top-level conf/."""
    package = Path(grok_cli.__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"grok configs not found next to {package}")


@functools.cache
def load_yaml(path: Path) -> DictConfig:
    return OmegaConf.load(path)


def groups(config_name: str) -> dict[str, str | None]:
    """{group: default choice} of a primary config's defaults list, through the configs it
    extends (sweep.yaml extends run.yaml); Hydra's own groups (hydra/...) left out."""
    found: dict[str, str | None] = {}
    for entry in load_yaml(conf_dir() / f"{config_name}.yaml").get("defaults", []):
        if isinstance(entry, str):
            if (conf_dir() / f"{entry}.yaml").is_file():
                found.update(groups(entry))
            continue
        for key, choice in entry.items():
            if "/" not in key and not key.startswith("override "):
                found[key.removeprefix("optional ").split("@")[0]] = choice
    return found


def choices(group: str) -> list[str]:
    return sorted(path.stem for path in (conf_dir() / group).glob("*.yaml"))


def top_keys(config_name: str) -> list[str]:
    """The top-level keys a primary config defines (its own and those of configs it extends)."""
    cfg = load_yaml(conf_dir() / f"{config_name}.yaml")
    keys = [key for key in cfg if key not in ("defaults", "hydra")]
    for entry in cfg.get("defaults", []):
        if isinstance(entry, str) and (conf_dir() / f"{entry}.yaml").is_file():
            keys += [key for key in top_keys(entry) if key not in keys]
    return keys


def check_overrides(config_name: str, overrides: list[str]) -> None:
    """Refuse, before Hydra runs anything, a group choice that does not exist (in each value of
    a sweep too, where Hydra would find it only after the earlier jobs ran), `+key` at the
    top level for a key the config does not know (Hydra would add it, and nothing reads it),
    and an empty output folder."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known_groups = groups(config_name)
    parsed = OverridesParser.create().parse_overrides(overrides)
    # `+group=choice` may add any group conf/ or a `hydra.searchpath` folder holds (a lever
    # is its module plus its conf file: nothing lists it in run.yaml's defaults).
    known = top_keys(config_name) + list(known_groups) + group_folders(parsed)
    for override in parsed:
        key = override.key_or_group
        if key in ("hydra.run.dir", "hydra.sweep.dir"):  # empty: Hydra writes into the cwd
            check(override.value() not in ("", None), key, override.value(), "a folder path")
        if key in known_groups and not override.is_delete():
            values = (override.sweep_string_iterator() if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
            options = choices(key) + (["null"] if known_groups[key] is None else [])
            for choice in values:
                check(choice in options or "${" in choice, key, choice,
                      f"Available options in '{key}': {', '.join(options)}"
                      + did_you_mean(str(choice), options))
        elif (override.is_add() or override.is_force_add()) and "." not in key:
            if key not in known and not key.startswith("hydra"):
                raise GrokError(f"{override.input_line} is not allowed: grok {config_name} has "
                                f"no key '{key}'{did_you_mean(key, known)} (+ adds a key that "
                                f"nothing reads; grok {config_name} --help lists every key)")


def group_folders(overrides: list) -> list[str]:
    """The config groups (folders) of conf/ and of the command line's `hydra.searchpath`."""
    roots = [conf_dir()]
    for override in overrides:
        if override.key_or_group == "hydra.searchpath" and isinstance(override.value(), list):
            roots += [Path(str(p).removeprefix("file://")) for p in override.value()]
    return [d.name for root in roots if root.is_dir() for d in root.iterdir() if d.is_dir()]


# ---------------------------------------------------------------- conf/run.yaml's values


def validate_run_config(cfg: DictConfig) -> None:
    """The top-level keys of conf/run.yaml (groups check their own: tasks/, models/, ...)."""
    check(is_number(cfg.alpha) and cfg.alpha > 0, "alpha", cfg.alpha,
          "a number > 0 (1 = no rescaling)")
    check(is_number(cfg.data_fraction) and 0 < cfg.data_fraction <= 1,
          "data_fraction", cfg.data_fraction, "a fraction in (0, 1]")
    check_positive_int("train_size", cfg.train_size, null="use data_fraction")
    for key in ("steps", "eval_every", "ckpt_every", "eval_batch_size"):
        check_positive_int(key, cfg[key])
    check_positive_int("save_every", cfg.get("save_every"), null="no snapshots")
    # Checkpoints and snapshots are taken at evaluations (their RNG snapshot comes from there).
    for key in ("ckpt_every", "save_every"):
        check(not cfg[key] or cfg[key] % cfg.eval_every == 0, key, cfg[key],
              f"a multiple of eval_every ({cfg.eval_every})")
    check(is_int(cfg.seed), "seed", cfg.seed, "an integer")
    check_positive_int("batch_size", cfg.batch_size, null="full batch")
    check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(cfg.device)) is not None, "device",
          cfg.device, "auto, cpu, cuda, cuda:N or mps")
    check(isinstance(cfg.resume, bool) or cfg.resume == "auto", "resume", cfg.resume,
          "auto (continue from checkpoints/last.pt when present) or false")
    check_threads(cfg.threads)
    check_choice("progress", cfg.progress, ("auto", "bar", "log"))
    check_choice("precision", cfg.precision, ("fp32", "bf16"))
    check(isinstance(cfg.compile, bool), "compile", cfg.compile, "true or false")
    for key in ("memorize", "generalize"):
        value = cfg.thresholds[key]
        check(is_number(value) and 0 < value <= 1, f"thresholds.{key}", value,
              "an accuracy in (0, 1]")
