"""The nbcore hooks of nb-docker (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import DockerBackend


@hookimpl
def nbcore_register(register):
    register.backend(DockerBackend())
