"""`grok sweep launcher=slurm`: Hydra's entry point for grok_cli/launchers/slurm.py.

An empty subclass, as in hydra_plugins/grok_batched (which says why): Hydra instantiates only
launchers found under the `hydra_plugins` namespace; the logic stays in grok_cli.
"""

import grok_cli.launchers.slurm  # module-qualified: the scanner must see one launcher here


class SlurmLauncher(grok_cli.launchers.slurm.SlurmLauncher):
    """hydra-submitit-launcher's SLURM job array, checked and watched (grok_cli.launchers.slurm)."""
