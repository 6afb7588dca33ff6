"""The one way a config choice becomes code.

Every group file that picks code (`conf/model/gpt.yaml`, `conf/task/modadd.yaml`, a lever's
file, an analysis command's config) names its builder in `_target_`, a dotted path
`package.module.function`. `build` imports that module only when the choice is built, so a run
loads only its own model's and task's code and `grok --help` stays instant, and calls the
builder with the group's config node first. The builder's module may hold the group's
value checks as `check_config(node)`: `check` runs them before anything is built, and the
builder trusts them. A user's own module works the same way
(`model._target_=mypkg.mymodel.build model.name=mymodel`): nothing in grok lists the choices.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from omegaconf import DictConfig

from grok_cli.errors import bad_value


def resolve(key: str, target: object) -> Any:
    """The function a `_target_` names; a target that does not import is one line naming `key`."""
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        if isinstance(err, ModuleNotFoundError) and err.name and not module.startswith(err.name):
            raise  # the target's module exists but a library it needs is missing: not a typo
        raise bad_value(f"{key}._target_", target,
                        "a function as package.module.function that imports") from None


def target(key: str, node: DictConfig) -> object:
    """`node._target_`; for a run recorded before group files named their code, the one of
    the shipped file of its choice (conf/<key>/<name>.yaml), as any key missing from a
    record (config.with_defaults)."""
    if "_target_" in node:
        return node._target_
    from grok_cli.config import shipped_group

    return (shipped_group(key, node.get("name")) or {}).get("_target_")


def build(key: str, node: DictConfig, *args: Any, **kwargs: Any) -> Any:
    """Call the builder named by `node._target_` with `node` and the rest; `key` is the node's
    place in the run config (`model`, `task`, …) for the error line."""
    return resolve(key, target(key, node))(node, *args, **kwargs)


def check(key: str, node: DictConfig) -> None:
    """Run `check_config(node)` of the module of the builder that `node._target_` names, if it
    has one: the group's values checked alone, before anything is built."""
    from grok_cli.config import check_name

    builder = resolve(key, target(key, node))  # a typo in the target: named first
    check_name(key, node)
    checker = getattr(sys.modules[builder.__module__], "check_config", None)
    if checker is not None:
        checker(node)
