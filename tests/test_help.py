"""`grok COMMAND --help` lists every key with its description from the YAML comments, help and
`--version` answer without importing torch, and a closed pipe ends them quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import grok_command, grok_env
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from grok_cli import __version__
from grok_cli.cli import SUBCOMMANDS
from grok_cli.config import choices, conf_dir, groups
from grok_cli.help import help_text


def help_of(command: str, *overrides: str) -> str:
    config_name, _, what = SUBCOMMANDS[command]
    return help_text(command, config_name, what, list(overrides))


def leaves(cfg: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for key, value in cfg.items_ex(resolve=False):
        if isinstance(value, DictConfig) and len(value):
            out += leaves(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def composed_keys(config_name: str, *overrides: str) -> list[str]:
    """Every key the composed config has (a group's `name` is its choice, not a key to set;
    its `_target_`, where its code lives, is not one either: the help leaves it out)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    return [key for key in leaves(cfg) if not key.endswith((".name", "._target_"))]


def descriptions(text: str) -> dict[str, str]:
    """{key: description} of the help's Keys section (a long key has it on the next line)."""
    section = text.split("Keys (key=default):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(section):
        if line.startswith("  ") and not line.startswith("   "):
            key, _, rest = line.strip().partition("=")
            after = rest.split(None, 1)[1] if len(rest.split(None, 1)) > 1 else ""
            below = section[i + 1].strip() if i + 1 < len(section) else ""
            found[key] = after or (below if section[i + 1].startswith(" " * 8) else "")
    return found


@pytest.mark.parametrize("group", list(groups("sweep")))
def test_run_and_sweep_help_describe_every_key_of_every_choice(group):
    command = "sweep" if group in ("launcher", "sweep") else "run"
    for choice in choices(group):
        overrides = [f"{group}={choice}"]
        described = descriptions(help_of(command, *overrides))
        if command == "run":
            expected = composed_keys("run", *overrides)
        else:  # a launcher's own keys are Hydra's launcher settings; a preset adds none
            own = leaves(OmegaConf.load(conf_dir() / group / f"{choice}.yaml"))
            expected = ["sweep.summarize_only", "sweep.batched", *(
                key for key in own if key.startswith("hydra.launcher.") and "_target_" not in key)]
        missing = [key for key in expected if not described.get(key)]
        assert not missing, f"{group}={choice}: keys without a description: {missing}"


def test_run_help_lists_groups_and_keys_and_nothing_grok_run_rejects():
    text = help_of("run")
    assert "  task=" in text and "    modadd *" in text and "    imdb" in text
    assert "alpha=3.0" in text and "rescale factor" in text
    assert "hydra.run.dir=" in text
    assert "launcher" not in text and "\n  sweep" not in text
    assert "Hydra is" not in text and "powered by Hydra" not in text
    # The group chosen on the command line shows its own keys.
    assert "task.hub_id=stanfordnlp/imdb" in help_of("run", "task=imdb")


@pytest.mark.parametrize("command", ["cds", "pathways"])
def test_analysis_help_shows_its_own_keys_not_grok_runs(command):
    text = help_of(command)
    described = descriptions(text)
    assert set(composed_keys(SUBCOMMANDS[command][0])) <= set(described)
    for foreign in ("  task=", "  model=", "  optimizer=", "alpha=", "launcher"):
        assert foreign not in text
    assert "powered by Hydra" not in text and "== Config groups ==" not in text


def test_help_and_version_import_no_torch():
    code = ("import sys\nfrom grok_cli.cli import main\n"
            "for args in (['--help'], ['--version'], ['run', '--help'], ['sweep', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit as err:\n"
            "        assert err.code in (0, None), (args, err.code)\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], env=grok_env(), capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.splitlines()[-1] == "[]"
    assert f"grok {__version__}" in result.stdout.splitlines()


def test_help_into_a_closed_pipe_ends_quietly():
    """`grok sweep --help | head`: the reader is gone before the help is written."""
    proc = subprocess.Popen(grok_command("sweep", "--help"), env=grok_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as any Unix tool
    assert stderr == ""
