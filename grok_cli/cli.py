"""The `grok` command: one Hydra app per subcommand, all sharing the configs in conf/.

The subcommands are found in conf/: `run` and `sweep` train (TRAINING), and every other
conf/<name>.yaml that names its task function in `_target_` is the analysis command
`grok <name>`, summarized by the file's first line (`# grok <name>: what it does`). Adding an
analysis is one module and one config file; nothing here lists them.

Two jobs besides dispatching. It stays light: a subcommand's module (and torch with it) is
imported only when its task runs, so `grok --help`, `grok run --help` and `grok --version`
answer at once. And it is the boundary where a mistake on the command line (a key or choice
that does not exist, an override that does not parse, an output folder that cannot be written)
becomes one `error:` line and exit code 2 instead of Hydra's report and exit code 1.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from grok_cli import __version__
from grok_cli.config import check_overrides, conf_dir, groups, load_yaml, top_keys
from grok_cli.errors import (
    EXIT_USER_ERROR,
    bad_value,
    did_you_mean,
    fail,
    full_error,
    path_mistake,
    user_mistake,
)
from grok_cli.registry import resolve

__all__ = ["main", "conf_dir"]

# The training commands: task function and summary. Every other command is an analysis.
TRAINING = {
    "run": ("grok_cli.training.run.main",
            "train one experiment into a run folder (-m: Hydra's plain multirun)"),
    "sweep": ("grok_cli.sweep.main", "a multirun over a grid, with one summary table"),
}
RUN_FOLDER_CALLBACK = "grok_cli.runfolder.record.RunFolderCallback"
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what any Unix tool exits with when its reader left
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


@dataclass(frozen=True)
class Command:
    """`grok <name>`: its primary config conf/<name>.yaml, task function and summary line."""

    name: str
    target: str  # package.module.function (grok_cli.registry.resolve)
    what: str

    @property
    def config_name(self) -> str:
        return self.name

    @property
    def analysis(self) -> bool:
        """Reads folders and writes an analysis folder of its own (a refusal: nothing)."""
        return self.name not in TRAINING


def commands() -> dict[str, Command]:
    """Every subcommand: the training ones, then one per conf/<name>.yaml with a `_target_`."""
    found = {name: Command(name, target, what) for name, (target, what) in TRAINING.items()}
    for path in sorted(conf_dir().glob("*.yaml")):
        # Read as text, not composed: `grok --help` stays instant.
        text = path.read_text()
        target = re.search(r"^_target_:\s*([\w.]+)", text, re.MULTILINE)
        if path.stem not in found and target is not None:
            found[path.stem] = Command(path.stem, target.group(1), summary_line(path, text))
    return found


def summary_line(path: Path, text: str) -> str:
    """What an analysis does, from its config's first line: `# grok <name>: what it does`."""
    match = re.match(rf"# grok {re.escape(path.stem)}: (.+)", text)
    return match.group(1).strip() if match else f"the analysis of conf/{path.name}"


def usage(found: dict[str, Command]) -> str:
    lines = "\n".join(f"  {c.name:<10} {c.what}" for c in found.values())
    return (f"usage: grok {{{','.join(found)}}} [key=value ...] [flags]\n\n{lines}\n\n"
            "grok COMMAND --help lists the command's groups and keys; grok --version.")


def main(argv: list[str] | None = None) -> None:
    try:
        _dispatch(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        _reader_gone()
    except KeyboardInterrupt:  # Ctrl-C: what was written stays; no traceback for it
        if full_error():
            raise
        print("interrupted: the same command continues a run from its last checkpoint",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def _reader_gone() -> NoReturn:
    """`grok sweep --help | head`: the reader has what it wanted. Python would flush the rest of
    stdout at exit and fail again, so stdout goes to /dev/null first."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


def _dispatch(args: list[str]) -> None:
    found = commands()
    if not args or args[0] in ("-h", "--help"):
        print(usage(found))
        sys.exit(0 if args else 2)
    if args[0] in ("-V", "--version"):
        print(f"grok {__version__}")
        return
    command, rest = args[0], args[1:]
    if command not in found:
        fail(f"{command!r} is not a grok command: one of {', '.join(found)}"
             + did_you_mean(command, found))
    config_name = found[command].config_name
    if "-h" in rest or "--help" in rest:
        from grok_cli.help import help_text

        print(help_text(command, config_name, found[command].what, rest))
        return
    if command == "sweep":
        rest = _batched_switch(rest)
    _report_mistakes(lambda: check_overrides(config_name, _overrides(command, rest)), command,
                     config_name)
    _run_hydra(found[command], rest)


def _overrides(command: str, args: list[str]) -> list[str]:
    """The overrides among the arguments, by Hydra's own parser (a bad flag: one line)."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.prog = f"grok {command}"
    parser.error = lambda message: fail(f"{message} (grok {command} --help lists the flags)")
    return parser.parse_args(args).overrides


def _run_hydra(cmd: Command, args: list[str]) -> None:
    import hydra
    from hydra._internal import utils as hydra_utils

    command, config_name = cmd.name, cmd.config_name
    # --cfg / --info print one composed config and run nothing: Hydra refuses them beside
    # --multirun, so a sweep shows its job's config with the grid's keys as the grid gave them.
    shows_config = any(flag in args for flag in ("-c", "--cfg", "-i", "--info"))
    if shows_config and ("-m" in args or "--multirun" in args):
        fail("-m and --cfg/--info cannot be combined: --cfg prints one job's config; "
             "drop -m and give each key one value")
    multirun = (command == "sweep" and not shows_config) or "-m" in args or "--multirun" in args
    dir_key = "hydra.sweep.dir" if multirun or command == "sweep" else "hydra.run.dir"
    folder = _output_folder(config_name, dir_key, args)
    # Hydra reports every exception of its own phase (composing the config, creating the output
    # folder, logging into it) in several lines and exits 1; user mistakes get one line here.
    hydra_report = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        return hydra_report(lambda: _report_mistakes(func, command, config_name,
                                                     {dir_key: folder}, blame=dir_key))

    if command == "sweep" and not shows_config:
        import grok_cli.sweep  # noqa: F401  registers the job-folder resolver of conf/sweep.yaml

        # conf/sweep.yaml sets hydra.mode=MULTIRUN, but Hydra reads it from a config composed
        # apart; when that fails (a bad value) it would run once and hide the real error.
        args = ["--multirun", *args]
    if cmd.analysis:  # notes the output folder it creates, so that a refusal removes it
        # Beside the other overrides: Hydra's parser wants them together.
        at = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")),
                  len(args))
        args = [*args[:at], f"++hydra.callbacks.run_folder._target_={RUN_FOLDER_CALLBACK}",
                *args[at:]]
    sys.argv = [f"grok {command}", *args]  # Hydra reads its flags and overrides from sys.argv
    app = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name=config_name)
    hydra_utils.run_and_report = run_and_report
    try:
        app(Task(cmd))()
    finally:  # an in-process caller (a test, a notebook) gets Hydra's own function back
        hydra_utils.run_and_report = hydra_report


def _output_folder(config_name: str, dir_key: str, args: list[str]) -> str:
    """hydra.run.dir (or hydra.sweep.dir) as given on the command line, else as configured."""
    given = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{dir_key}=")]
    if given:
        return given[-1]
    hydra_cfg = load_yaml(conf_dir() / f"{config_name}.yaml").hydra
    return hydra_cfg[dir_key.split(".")[1]]._get_node("dir")._value()


def _report_mistakes(func: Callable[[], Any], command: str, config_name: str,
                     paths: dict[str, str] | None = None, blame: str | None = None) -> Any:
    """Run `func`; a user's mistake becomes one `error:` line and exit 2, anything else (a bug)
    goes on as it was (HYDRA_FULL_ERROR=1: mistakes too)."""
    try:
        return func()
    except BrokenPipeError:
        _reader_gone()
    except Exception as err:
        message = (user_mistake(err, command, [*top_keys(config_name), *groups(config_name)])
                   or path_mistake(err, paths or {}, blame=blame))
        if message is None or full_error():
            raise
        fail(message)


class Task:
    """A subcommand's task function, imported only when the task runs (torch loads with it).

    Hydra names the job (and its log file: run.log, cds.log) after the last part of
    `__module__`. In a single run, mistakes found while it runs get one line too: an
    interpolation that does not resolve, a run folder that cannot be written. A multirun's jobs
    record their own failures, and a worker process (launcher=local, slurm) unpickles the
    target function itself. `_target_` picks the code; the task gets the settings without it.
    """

    def __init__(self, cmd: Command) -> None:
        self.cmd = cmd
        self.__module__ = f"grok_cli.{cmd.name}"

    def __reduce__(self) -> tuple[Any, ...]:
        return _settings_only, (self.cmd.target,)

    def __call__(self, cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.RUN:
            return _settings_only(self.cmd.target)(cfg)
        run_dir = hydra_cfg.runtime.output_dir

        def checked_run() -> Any:
            OmegaConf.to_container(cfg, resolve=True)  # a bad ${...}: found before any work
            _check_writable(run_dir)
            return _settings_only(self.cmd.target)(cfg)

        paths = {"hydra.run.dir": run_dir, **_path_values(cfg)}
        try:
            return _report_mistakes(checked_run, self.cmd.name, hydra_cfg.job.config_name,
                                    paths)
        except SystemExit as exited:
            if exited.code == EXIT_USER_ERROR and self.cmd.analysis:
                from grok_cli.runfolder.record import discard_new_output

                discard_new_output(run_dir)  # a refusal writes nothing
            raise


def _settings_only(target: str) -> Callable[[Any], Any]:
    """The task function `target` names, called with the config less its `_target_` (it
    picks the code, it is not a setting: pathways.json records the settings)."""
    function = resolve("_target_", target)

    def call(cfg: Any) -> Any:
        from omegaconf import open_dict

        if "_target_" in cfg:
            with open_dict(cfg):
                del cfg["_target_"]
        return function(cfg)

    return call


def _check_writable(folder: str) -> None:
    """A read-only run folder is refused before the task starts (and writes half its files)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(err.errno, err.strerror, folder) from None


def _path_values(cfg: Any) -> dict[str, str]:
    """{key: value} of the config's values that name paths (they hold a path separator)."""
    from omegaconf import OmegaConf

    flat = OmegaConf.to_container(cfg, resolve=False)  # as typed: a bad ${...} is reported apart
    found: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, list):
            for value in node:
                walk(value, prefix)
        elif isinstance(node, str) and os.sep in node:
            found[prefix.rstrip(".")] = node

    walk(flat, "")
    return found


def _batched_switch(args: list[str]) -> list[str]:
    """One switch picks the batched launcher: `launcher=batched`. `sweep.batched` only records
    it in the job configs (conf/launcher/batched.yaml sets it), so setting it is one line."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "sweep.batched":
            fail(str(bad_value("sweep.batched", value, "not set on the command line: "
                               "launcher=batched is the switch (sweep.batched records it)")))
    return args


if __name__ == "__main__":
    main()
