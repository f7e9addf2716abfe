"""The nbcore hooks of nb-conda (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import CondaBackend


@hookimpl
def nbcore_register(register):
    backend = CondaBackend()
    register.backend(backend)
    register.capability("conda-prefix", backend.builder)
