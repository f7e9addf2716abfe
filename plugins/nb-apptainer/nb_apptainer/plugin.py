"""The nbcore hooks of nb-apptainer (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import ApptainerBackend


@hookimpl
def nbcore_register(register):
    register.backend(ApptainerBackend())
