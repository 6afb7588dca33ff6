"""User mistakes: one `error:` line and exit code 2, never a traceback.

A mistake is reported where it is found: `GrokError` from the checks below, or, at the CLI
boundary, Hydra's and OmegaConf's own exceptions about the command line (a key or group choice
that does not exist, an override that does not parse, an interpolation that does not resolve),
turned into one line by `user_mistake`. HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import difflib
import errno
import functools
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2
# File-system errors that mean a path the user chose cannot be used (not a bug, not the disk).
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}


class GrokError(Exception):
    """A mistake in the user's input (config value, file, checkpoint): reported in one line."""


EXIT_FAULT = 1


class Fault(Exception):
    """The machine or the file system failed mid-run (a full disk, the run folder removed or
    made read-only): one `error:` line and exit 1, since the command line was not the cause."""


# What to do about a file-system fault, by errno.
_FAULT_HINTS = {
    errno.ENOSPC: "the disk is full: free space, then the same command continues from the "
                  "last checkpoint",
    errno.EDQUOT: "the disk quota is used up: free space, then the same command continues "
                  "from the last checkpoint",
    errno.ENOENT: "the run folder or a file in it was removed while the run wrote it",
    errno.EACCES: "the run folder's permissions changed while the run wrote it",
    errno.EROFS: "the file system became read-only while the run wrote it",
}


def as_fault(err: BaseException, folder: str | os.PathLike[str]) -> BaseException:
    """A file-system error met mid-run as a Fault (one line, with the original error) when it
    is the machine's: no space, a read-only file system, or any error on a file of the run's
    `folder` (the command checked that it could write there). Any other error is returned as
    it is: a missing input file, say, is the command line's mistake."""
    if not isinstance(err, OSError):
        return err
    inside = err.filename is not None and os.path.abspath(os.fsdecode(err.filename)).startswith(
        os.path.join(os.path.abspath(folder), ""))
    if not inside and err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return err
    where = f" {os.fsdecode(err.filename)!r}" if err.filename else ""
    hint = _FAULT_HINTS.get(err.errno or 0, "the same command continues from the last "
                            "checkpoint once the cause is fixed")
    return Fault(f"writing{where} failed mid-run ({err.strerror or err}): {hint}")


def is_int(value: object) -> bool:
    """An integer config value (YAML `true` is a bool, not the integer 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def bad_value(key: str, value: Any, allowed: str) -> GrokError:
    """The standard message for a bad config value: names the key, the value and what is allowed."""
    shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as YAML writes it
    return GrokError(f"{key}={shown} is not allowed: {allowed}")


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise bad_value(key, value, allowed)


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    allowed = "one of " + ", ".join(map(str, choices))
    check(value in choices, key, value, allowed + did_you_mean(str(value), map(str, choices)))


def check_positive_int(key: str, value: Any, null: str | None = None) -> None:
    """A positive integer; with `null` (what null means), null is allowed too."""
    allowed = "a positive integer" if null is None else f"null ({null}) or a positive integer"
    check((null is not None and value is None) or (is_int(value) and value > 0), key, value,
          allowed)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`; did you mean alpha?` for the closest candidate, or "" when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def full_error() -> bool:
    """HYDRA_FULL_ERROR=1: show tracebacks of user mistakes, for debugging."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def report_user_errors(fn: F) -> F:
    """Turn a GrokError into `error: <message>` on stderr and exit code 2, a Fault into its
    line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (GrokError, Fault) as err:
            if full_error():
                raise
            if isinstance(err, Fault):
                print(f"error: {err}", file=sys.stderr)
                sys.exit(EXIT_FAULT)
            fail(str(err))

    return wrapper  # type: ignore[return-value]


def stops_on_error(fn: F) -> F:
    """For a Hydra callback's method: Hydra turns a callback's exception into a warning and
    goes on (a sweep meant to launch nothing would train); here any exception stops the
    command with one line: exit 2 for a GrokError, 1 for anything else."""

    reported = report_user_errors(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return reported(*args, **kwargs)
        except Exception as err:
            if full_error():
                import traceback

                traceback.print_exc()
            print(f"error: {fn.__qualname__} failed: {type(err).__name__}: {err} "
                  "(HYDRA_FULL_ERROR=1 shows where)", file=sys.stderr)
            sys.exit(EXIT_FAULT)

    return wrapper  # type: ignore[return-value]


# ------------------------------------------------- Hydra's and OmegaConf's exceptions


def user_mistake(err: BaseException, command: str, top_keys: Iterable[str] = ()) -> str | None:
    """One line for an exception caused by the command line, or None for anything else (a bug).

    `command` names the subcommand in hints; `top_keys` are its top-level keys and groups, for
    "did you mean".
    """
    for read in (_own, _missing_choice, _bad_syntax, _unknown_key, _unknown_group,
                 _grid_without_multirun, _unresolved, _hydra_report):
        message = read(err, command, list(top_keys))
        if message:
            return message
    return None


def _own(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    return str(err) if isinstance(err, GrokError) else None


def _missing_choice(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    """`task=imbd`: a group choice without a file in conf/."""
    from hydra.errors import MissingConfigException

    if not (isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file):
        return None
    group, _, choice = err.missing_cfg_file.rpartition("/")
    return (f"{group}={choice} is not allowed: Available options in '{group}': "
            f"{', '.join(err.options)}{did_you_mean(choice, err.options)}")


def _bad_syntax(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    from hydra.errors import OverrideParseException

    if not isinstance(err, OverrideParseException):
        return None
    return (f"{err.override!r} is not allowed: {_first_line(err.message)}; write key=value, "
            "and a value holding =, brackets, commas or spaces in quotes of its own inside "
            "the shell's: \"key='a=b,c'\" (a sweep's job folder, for one)")


def _unknown_key(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    """`alpah=10`: a key the config does not have, with the closest one it does."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = err.__cause__
    if not (isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key):
        return None
    parent, _, leaf = cause.full_key.rpartition(".")
    candidates = [key for key in (cause.parent_node or {}) if key != "hydra"]
    where = f"'{parent}'" if parent else f"grok {command}"
    return (f"{_as_typed(err, cause.full_key)} is not allowed: {where} has no key '{leaf}'"
            f"{did_you_mean(leaf, candidates + ([] if parent else top_keys))} "
            f"(grok {command} --help lists every key)")


def _unknown_group(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    """`grok cds task=imdb`: a group (or key) this command does not have."""
    found = re.match(r"Could not override '(.+?)'\. No match in the defaults list", str(err))
    if not found:
        return None
    name = found.group(1)
    return (f"{_as_typed(err, name)} is not allowed: grok {command} has no group or key "
            f"'{name}'{did_you_mean(name, top_keys)} (grok {command} --help lists them)")


def _grid_without_multirun(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    """`grok run seed=0,1`: a comma list is a grid, which needs a multirun."""
    found = re.match(r"Ambiguous value for argument '(.+?)'", str(err))
    if not found:
        return None
    if command == "sweep":  # only --cfg / --info run a sweep's config without a multirun
        return (f"{found.group(1)!r} is not allowed with --cfg/--info: they print one job's "
                "config; give each key one value")
    return (f"{found.group(1)!r} is not allowed: a comma list is a grid: grok sweep ..., or "
            f"grok {command} -m ...; [a,b] for a list value, 'a,b' quoted for a string")


def _unresolved(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    """`alpha=${nope}`: an interpolation that does not resolve."""
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    if not isinstance(err, InterpolationResolutionError | MissingMandatoryValue):
        return None
    raw = err.child_node._value() if err.child_node is not None else None
    return str(bad_value(err.full_key, raw, _first_line(str(err))))


def _hydra_report(err: BaseException, command: str, top_keys: list[str]) -> str | None:
    """Any other mistake Hydra reports about the command line, on one line."""
    from hydra.errors import CompactHydraException

    if not isinstance(err, CompactHydraException):
        return None
    text = str(err) + (f": {_first_line(str(err.__cause__))}" if err.__cause__ else "")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _as_typed(err: BaseException, key: str) -> str:
    """The override as the user typed it, which Hydra quotes after `use +`."""
    typed = re.search(r"use \+(.+)$", str(err), re.MULTILINE)
    return typed.group(1) if typed else key


def path_mistake(err: BaseException, paths: dict[str, str], blame: str | None = None
                 ) -> str | None:
    """One line for a file-system error on a path the user chose, or None (a bug).

    `paths` maps config keys (hydra.run.dir, out_dir, ...) to the paths they hold; the key
    whose path holds the failing file is named. A permission or file-type error (a read-only
    folder, a file where a folder belongs) on another path is the user's too: it names `blame`
    (a key of `paths`) when given, else the path alone.
    """
    oserror = next((e for e in _chain(err) if isinstance(e, OSError) and e.filename), None)
    if oserror is None:
        return None
    filename = os.path.abspath(os.fsdecode(oserror.filename))
    reason = f"cannot create or write {filename!r} ({oserror.strerror})"
    holders = [key for key, path in paths.items()
               if (filename + os.sep).startswith(os.path.abspath(path).rstrip(os.sep) + os.sep)]
    if holders:
        blame = max(holders, key=lambda key: len(os.path.abspath(paths[key])))
    elif oserror.errno not in USER_ERRNOS:
        return None
    if blame is None:
        return f"{reason}: a path you can write to"
    return f"{blame}={paths[blame]!r} is not allowed: {reason}; a folder you can write to"


def _chain(err: BaseException | None) -> Iterable[BaseException]:
    """The exception and those it was raised from or while handling."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
