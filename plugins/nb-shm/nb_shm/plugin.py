"""The nbcore hooks of nb-shm (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .protocol import ShmPickle


@hookimpl
def nbcore_register(register):
    register.protocol(ShmPickle())
