"""The nbcore hooks of nb-ray (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import RayBackend


@hookimpl
def nbcore_register(register):
    register.backend(RayBackend())
