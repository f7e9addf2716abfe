"""The nbcore hooks of nb-slurm (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import SlurmBackend


@hookimpl
def nbcore_register(register):
    register.backend(SlurmBackend())
