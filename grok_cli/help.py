"""`grok <command> --help`: the command's groups and keys, each described by the comment written
next to it in conf/ (on its line, or the comment block right above it; a key without one takes
its parent's). Read from the YAML files; Hydra composes the config only to learn which choices
are in effect. No torch import, so help answers at once."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from grok_cli.config import choices, conf_dir, groups, load_yaml

WIDTH = 100
KEY_COLUMN = 32
_KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w]*)\s*:(.*)$")
_DEFAULTS_ENTRY = re.compile(r"^\s*-\s*(?:optional\s+)?([\w]+)(?:@\S+)?\s*:[^#]*#\s*(.*)$")
_SENTENCE_END = re.compile(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.!?])\s+(?=[A-Z0-9(`])")
FLAGS = """\
Flags (Hydra's):
  -m, --multirun          Hydra's plain multirun: one job per combination of the comma lists,
                          numbered in outputs/multirun/; no summary.csv, jobs not found again
                          by name (that is `grok sweep`, which is always a multirun)
  --cfg job|hydra|all     print the composed config and exit (--resolve to resolve it)
  --info                  where the configs come from
  --hydra-help            Hydra's own flags
  HYDRA_FULL_ERROR=1      (environment) a traceback instead of the one `error:` line"""


def help_text(command: str, config_name: str, summary: str, overrides: list[str]) -> str:
    """The whole help of `grok <command>`; `overrides` pick the groups whose keys are listed."""
    primary = conf_dir() / f"{config_name}.yaml"
    chosen = _chosen_groups(config_name, overrides)
    head = header(primary)
    if head and head[0].startswith(f"grok {command}: "):  # the summary line (cli.commands)
        head = head[1:]
    lines = [f"usage: grok {command} [key=value ...] [flags]", "", summary, "", *head, ""]
    if chosen:
        lines += ["Groups (group=choice; * = in effect):", *_group_lines(config_name, chosen), ""]
    lines += ["Keys (key=default):"]
    for path, prefix in _key_sources(config_name, chosen):
        lines += _key_lines(path, prefix)
    lines += _output_lines(config_name)
    lines += ["", FLAGS]
    return "\n".join(lines)


def header(path: Path) -> list[str]:
    """The first paragraph of a YAML file's leading comment (a `#` line alone ends it)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.strip() == "#":
            break
        if "@package" not in line:
            lines.append(line.removeprefix("#").removeprefix(" ").rstrip())
    return lines


def key_comments(path: Path) -> dict[str, str]:
    """{dotted key: its comment} of one YAML file: the comment on the key's line (continued on
    the comment lines aligned under it), else the comment block right above the key."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    block: list[str] = []
    inline: tuple[str, int] | None = None  # (key, column of its '#')
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if inline and line.index("#") == inline[1]:
                comments[inline[0]] += " " + text
            elif not stripped.startswith("#  "):  # an indented example is not a description
                block.append(text)
                inline = None
            continue
        match = _KEY_LINE.match(line)
        if not match:
            block, inline = [], None
            continue
        indent, key, rest = len(match[1]), match[2], match[3]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        dotted = ".".join(name for _, name in stack)
        comment = rest.split(" #", 1)[1].strip() if " #" in rest else ""
        if comment or block:
            comments[dotted] = comment or " ".join(block)
        inline = (dotted, line.index(" #") + 1) if comment else None
        block = []
    return comments


def first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def _chosen_groups(config_name: str, overrides: list[str]) -> dict[str, str | None]:
    """The group choices the command would run with: the command line's (the first value of a
    grid), and those the configs pick (a text task's recipe picks model=bert)."""
    from hydra import compose, initialize_config_dir

    simple = [arg.split(",")[0] for arg in overrides if "=" in arg and not arg.startswith("-")]
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
            picked = compose(config_name=config_name, overrides=simple,
                             return_hydra_config=True).hydra.runtime.choices
    except Exception:  # a mistake on the command line: the run itself will report it
        picked = {}
    return {group: picked.get(group, default) for group, default in groups(config_name).items()}


def _group_lines(config_name: str, chosen: dict[str, str | None]) -> list[str]:
    described = _defaults_comments(config_name)
    lines = []
    for group, choice in chosen.items():
        lines += _wrap(f"  {group}=", described.get(group, ""))
        for option in choices(group):
            mark = " *" if option == choice else ""
            text = first_sentence(" ".join(header(conf_dir() / group / f"{option}.yaml")))
            lines += _wrap(f"    {option}{mark}", _shorten(text, WIDTH - KEY_COLUMN))
    return lines


def _defaults_comments(config_name: str) -> dict[str, str]:
    """{group: comment} from the defaults lists of a primary config and those it extends."""
    found: dict[str, str] = {}
    path = conf_dir() / f"{config_name}.yaml"
    for entry in load_yaml(path).get("defaults", []):
        if isinstance(entry, str) and (conf_dir() / f"{entry}.yaml").is_file():
            found.update(_defaults_comments(entry))
    for line in path.read_text().splitlines():
        match = _DEFAULTS_ENTRY.match(line)
        if match:
            found[match[1]] = match[2].strip()
    return found


def _key_sources(config_name: str, chosen: dict[str, str | None]) -> list[tuple[Path, str]]:
    """(YAML file, key prefix): the primary config, those it extends, the chosen groups."""
    sources: list[tuple[Path, str]] = []
    for entry in load_yaml(conf_dir() / f"{config_name}.yaml").get("defaults", []):
        if isinstance(entry, str) and (conf_dir() / f"{entry}.yaml").is_file():
            sources += [s for s in _key_sources(entry, {}) if s[1] == ""]
    sources.append((conf_dir() / f"{config_name}.yaml", ""))
    for group, choice in chosen.items():
        if choice is not None:
            sources.append((conf_dir() / group / f"{choice}.yaml", f"{group}."))
    return sources


def _output_lines(config_name: str) -> list[str]:
    """The output folder keys of the primary config's `hydra:` section."""
    hydra = load_yaml(conf_dir() / f"{config_name}.yaml").get("hydra", {})
    what = {"run": "the run folder" if config_name == "run" else "the output folder",
            "sweep": "the sweep folder of a multirun: one folder per job inside"}
    return [line for mode in ("run", "sweep") if mode in hydra and "dir" in hydra[mode]
            for line in _wrap(f"  hydra.{mode}.dir={_show(hydra[mode]._get_node('dir'))}",
                              what[mode])]


def _key_lines(path: Path, prefix: str) -> list[str]:
    comments = key_comments(path)
    glob = "@package _global_" in path.read_text().split("\n", 1)[0]
    lines = []
    for key, value in _leaves(load_yaml(path)):
        if key.startswith(("defaults", "_")) or key.endswith("._target_") or key == "name":
            continue
        # A global-package choice (a launcher) adds only Hydra settings; its other keys
        # are the top-level ones already listed.
        if glob and not key.startswith("hydra.launcher."):
            continue
        if not glob and key.startswith("hydra."):
            continue
        parts = key.split(".")
        described = next((comments[".".join(parts[:n])] for n in range(len(parts), 0, -1)
                          if ".".join(parts[:n]) in comments), "")
        full = key if glob else prefix + key
        lines += _wrap(f"  {full}={_show(value)}", first_sentence(described))
    return lines


def _leaves(cfg: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if not isinstance(cfg, DictConfig) or len(cfg) == 0:
        return [(prefix, cfg)]
    out = []
    for key in cfg:
        out += _leaves(cfg._get_node(key), f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    return out


def _show(node: Any) -> str:
    """A value as it would be typed on the command line."""
    if isinstance(node, ListConfig):
        return "[" + ", ".join(_show(node._get_node(i)) for i in range(len(node))) + "]"
    if isinstance(node, DictConfig):
        return "{}"
    value = node._value()
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    return str(value)


def _shorten(text: str, room: int) -> str:
    """One line: cut at a word boundary, marked with an ellipsis."""
    return text if len(text) <= room else text[:room - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _wrap(left: str, text: str) -> list[str]:
    if not text:
        return [left]
    if len(left) >= KEY_COLUMN - 1:
        return [left, *textwrap.wrap(text, WIDTH, initial_indent=" " * KEY_COLUMN,
                                     subsequent_indent=" " * KEY_COLUMN)]
    return textwrap.wrap(text, WIDTH, initial_indent=left.ljust(KEY_COLUMN),
                         subsequent_indent=" " * KEY_COLUMN)
