"""The nbcore hooks of nb-docker (the module named by the ``nbcore`` entry point)."""
import nbcore

from .backend import DockerBackend


@nbcore.hookimpl
def nbcore_register_backends(register):
    register(DockerBackend())
