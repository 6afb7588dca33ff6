"""User-facing errors: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2


class GrokError(Exception):
    """A mistake in the user's input (config value, file, checkpoint): reported in one line."""


def bad_value(key: str, value: Any, allowed: str) -> GrokError:
    """The standard message for a bad config value: names the key, the value and what is allowed."""
    return GrokError(f"{key}={value!r} is not allowed: {allowed}")


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise bad_value(key, value, allowed)


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    check(value in choices, key, value, "one of " + ", ".join(map(str, choices)))


def report_user_errors(fn: F) -> F:
    """Turn a GrokError into `error: <message>` on stderr and exit code 2.

    HYDRA_FULL_ERROR=1 lets the traceback through, for debugging.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GrokError as err:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper  # type: ignore[return-value]
