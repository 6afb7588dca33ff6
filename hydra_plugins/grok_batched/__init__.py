"""`grok sweep launcher=batched`: Hydra's entry point for the batched launcher.

Hydra instantiates a launcher only if its class was found by scanning the `hydra_plugins`
namespace package and its dotted name starts with `hydra_plugins.` (Plugins._instantiate), so
`grok_cli.training.batched.BatchedLauncher` cannot be named as `hydra.launcher._target_`
directly. This thin subclass gives it a name Hydra accepts; the logic stays in grok_cli.
There is deliberately no `hydra_plugins/__init__.py`: other plugins (joblib, submitit) share
the namespace. No ConfigStore entry is needed: conf/launcher/batched.yaml reuses Hydra's
`basic` launcher config (which has only `_target_`) and replaces the target.
"""

import grok_cli.training.batched  # module-qualified: the scanner must see one launcher here


class BatchedLauncher(grok_cli.training.batched.BatchedLauncher):
    """Trains all jobs of a multirun as one vmapped model (see grok_cli.training.batched)."""
