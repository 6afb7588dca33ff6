"""What conf/ holds, and the checks of the configs' values: each bad value is one GrokError.

The static views (a primary config's groups, choices and top-level keys) read the YAML files
only, so the command line can be checked before Hydra composes anything, and help can be
printed without importing torch.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

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
from grok_cli.threads import check_flush_threads, check_threads


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


def choices(group: str, searchpath: tuple[Path, ...] = ()) -> list[str]:
    """The choices of a group: grok's files, and those of any `hydra.searchpath` folders."""
    return sorted({path.stem for folder in (conf_dir(), *searchpath)
                   for path in (folder / group).glob("*.yaml")})


def searchpath(overrides: list[Any]) -> tuple[Path, ...]:
    """The local folders a `hydra.searchpath=[file://DIR,...]` override adds to conf/."""
    for override in overrides:
        if override.key_or_group == "hydra.searchpath":
            return tuple(Path(str(entry).removeprefix("file://")) for entry in override.value()
                         if str(entry).startswith("file://"))
    return ()


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
    extra = searchpath(parsed)
    # `+group=choice` may add any group conf/ or a `hydra.searchpath` folder holds (a lever
    # is its module plus its conf file: nothing lists it in run.yaml's defaults).
    known = top_keys(config_name) + list(known_groups) + group_folders(extra)
    for override in parsed:
        key = override.key_or_group
        if key in ("hydra.run.dir", "hydra.sweep.dir"):  # empty: Hydra writes into the cwd
            check(override.value() not in ("", None), key, override.value(), "a folder path")
        if key in known_groups and not override.is_delete():
            values = (override.sweep_string_iterator() if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
            options = choices(key, extra) + (["null"] if known_groups[key] is None else [])
            for choice in values:
                check(choice in options or "${" in choice, key, choice,
                      f"Available options in '{key}': {', '.join(options)}"
                      + did_you_mean(str(choice), options))
        elif (override.is_add() or override.is_force_add()) and "." not in key:
            if key not in known and not key.startswith("hydra"):
                raise GrokError(f"{override.input_line} is not allowed: grok {config_name} has "
                                f"no key '{key}'{did_you_mean(key, known)} (+ adds a key that "
                                f"nothing reads; grok {config_name} --help lists every key)")


def shipped_group(group: str, name: object) -> DictConfig | None:
    """The shipped file of a group choice, found by the `name` it gives (conf/model/gpt2.yaml
    for model.name=gpt2; optimizer.name=adamw is conf/optimizer/adamw.yaml, not adamw_fast);
    None for a choice grok does not ship (a user's own)."""
    path = conf_dir() / group / f"{name}.yaml"
    return load_yaml(path) if "/" not in str(name) and path.is_file() else None


def check_name(group: str, node: DictConfig) -> None:
    """A group's `name` goes with the code its `_target_` names: a shipped choice's name with
    that choice's code, any other name with a user's own (`model.name=gpt2` on model=gpt
    would train gpt under gpt2's name, and records and checkpoints would say gpt2)."""
    if "_target_" not in node:  # a record from before targets: its name picks the code
        return
    name, target = node.get("name"), node.get("_target_")
    shipped = shipped_group(group, name)
    if shipped is not None:
        check(shipped.get("_target_") == target, f"{group}.name", name,
              f"the name of {target} ({group}._target_), not of {shipped.get('_target_')} "
              f"(choose {name} with {group}={name}; your own code takes a name of its own)")
        return
    files = [load_yaml(path) for path in (conf_dir() / group).glob("*.yaml")]
    ours = {str(file.get("name")): file.get("_target_") for file in files}
    check(target not in ours.values(), f"{group}.name", name,
          f"one of {', '.join(sorted(ours))}, as its choice names it (choose one with "
          f"{group}=CHOICE, not {group}.name){did_you_mean(str(name), list(ours))}")


def default_value(key: str) -> Any:
    """A whole top-level key or group at its default: run.yaml's value, or the file of the
    group's default choice."""
    if key in groups("run"):
        choice = groups("run")[key]
        return None if choice is None else plain(load_yaml(conf_dir() / key / f"{choice}.yaml"))
    return plain(load_yaml(conf_dir() / "run.yaml").get(key))


def with_defaults(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A saved identity (a checkpoint's, a run folder's record) with each key it lacks at its
    default, for comparison with the `current` run's: the key did not exist when it was
    written, so the run had the behaviour the key's default keeps. The rule that makes this
    true: a key added later defaults, in the shipped file of its group's choice, to what the
    code did before it existed (loss=cross_entropy, optimizer.decay_steps=null, ...). A
    sub-key is filled only where the current group has it (text tasks have no `format`)."""
    filled = dict(saved)
    for key, now in current.items():
        if key not in saved:
            filled[key] = default_value(key)
        elif isinstance(saved[key], dict) and isinstance(now, dict):
            shipped = plain(shipped_group(key, saved[key].get("name"))) or {}
            filled[key] = {**{k: v for k, v in shipped.items() if k in now}, **saved[key]}
    return filled


def plain(node: Any) -> Any:
    """A config value as plain Python, without the `_target_` keys that name code: where code
    lives is no part of what a run computes, so moving it never makes a checkpoint refuse."""
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items() if k != "_target_"}
    return node


def group_folders(extra: tuple[Path, ...] = ()) -> list[str]:
    """The config groups (folders) of conf/ and of the command line's `hydra.searchpath`."""
    roots = [conf_dir(), *extra]
    return [d.name for root in roots if root.is_dir() for d in root.iterdir() if d.is_dir()]


# ---------------------------------------------------------------- conf/run.yaml's values


def validate_run_config(cfg: DictConfig) -> None:
    """The whole run config, before anything is built: the top-level keys of conf/run.yaml,
    then the model, task, optimizer and sampling groups (and `train_metrics`), each by its own
    module's `check_config` (registry.check), which their builders then trust. Checks that need
    the built task (the model's positions against the input length, a decoder on a next-token
    task) stay with the builders."""
    _validate_top_level(cfg)
    from grok_cli import registry
    from grok_cli.training.optim import check_optimizer

    registry.check("model", cfg.model)
    registry.check("task", cfg.task)
    check_optimizer(cfg.optimizer)
    if "sampling" in cfg:
        registry.check("sampling", cfg.sampling)
        from grok_cli.training.sampling import check_train_metrics

        check_train_metrics(cfg)
    check(is_number(cfg.weight_decay) and cfg.weight_decay >= 0, "weight_decay",
          cfg.weight_decay, "a number >= 0")


def _validate_top_level(cfg: DictConfig) -> None:
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
    check(isinstance(cfg.flush_denormal, bool), "flush_denormal", cfg.flush_denormal,
          "true or false")
    if is_int(cfg.threads) and cfg.device == "cpu":  # auto: the run checks what it gave
        check_flush_threads(cfg.flush_denormal, cfg.threads)
    for key in ("memorize", "generalize"):
        value = cfg.thresholds[key]
        check(is_number(value) and 0 < value <= 1, f"thresholds.{key}", value,
              "an accuracy in (0, 1]")
