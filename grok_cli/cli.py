"""The `grok` command: one Hydra app per subcommand, all sharing the configs in conf/."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import hydra

import grok_cli
from grok_cli.errors import bad_value

# subcommand -> (primary config in conf/, "module:function" taking the composed DictConfig)
SUBCOMMANDS = {
    "run": ("run", "grok_cli.training.run:main"),
    "sweep": ("sweep", "grok_cli.sweep:main"),
    "cds": ("cds", "grok_cli.analysis.cds:main"),
    "pathways": ("pathways", "grok_cli.pathways.command:main"),
}

USAGE = """usage: grok {run,sweep,cds,pathways} [hydra flags] [key=value ...]

  run        train one experiment (-m for a Hydra multirun)
  sweep      a multirun over a grid, with one summary table
  cds        critical-data-size analysis of finished runs (sweep_dir=DIR)
  pathways   MoE pathway metrics over checkpoints, with correlations

Each subcommand takes Hydra's own flags: --help, --cfg job, --info, -m."""


def conf_dir() -> Path:
    """conf/ inside the installed package (wheel), else the source checkout's top-level conf/."""
    package = Path(grok_cli.__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"grok configs not found next to {package}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    if args[0] not in SUBCOMMANDS:
        _fail(f"unknown command {args[0]!r}; allowed: {', '.join(SUBCOMMANDS)}")
    if args[0] == "sweep":
        args = _batched_switch(args)
    config_name, target = SUBCOMMANDS[args[0]]
    module_name, function_name = target.split(":")
    task_function = getattr(importlib.import_module(module_name), function_name)
    # Hydra reads its flags and overrides from sys.argv.
    sys.argv = [f"grok {args[0]}", *args[1:]]
    app = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name=config_name)
    app(task_function)()


def _batched_switch(args: list[str]) -> list[str]:
    """`sweep.batched=true` selects `launcher=batched`: Hydra picks the launcher from the
    defaults list before any config value is read, so the command-line switch is translated
    here. The switch itself stays in the overrides, so the job configs record it."""
    switch = [a for a in args if a.startswith("sweep.batched=")]
    if not switch:
        return args
    value = switch[-1].split("=", 1)[1].lower()
    if value not in ("true", "false"):
        _fail(str(bad_value("sweep.batched", value, "true or false")))
    launchers = [a for a in args if a.startswith("launcher=")]
    batched = value == "true"
    if launchers and (launchers[-1] == "launcher=batched") != batched:
        _fail(str(bad_value("sweep.batched", batched, f"{str(not batched).lower()} with "
                            f"{launchers[-1]} (true is launcher=batched)")))
    if not batched or launchers:
        return args
    at = args.index(switch[-1])  # next to it: Hydra's overrides must stay together
    return [*args[:at], "launcher=batched", *args[at:]]


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
