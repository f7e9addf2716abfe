"""The nbcore hooks of nb-conda (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import CondaBackend


@hookimpl
def nbcore_register_backends(register):
    register(CondaBackend())
