"""nb-shm: the ``shm-pickle`` protocol for nbcore (shared memory, pipe doorbell, safe zero-copy).

Installing the package is enough: with the default protocol list
``tcp-pickle,shm-pickle`` host and worker upgrade whenever both ends can.
"""
import contextlib

from .protocol import ShmPickle
from .worker import ShmChannel

__all__ = ["ShmChannel", "ShmPickle", "copying"]


@contextlib.contextmanager
def copying(env, enabled=True):
    """Within the block, arrays ``env`` returns are heap copies (``enabled=False``: views).

    ``env`` is an open :class:`nbcore.RemoteEnv`; nothing changes when it does not
    use shm-pickle.  For a whole environment set ``env.connection.channel.copy``;
    for every environment, ``NBCORE_SHM_COPY=1``.
    """
    channel = env.connection.channel
    if not isinstance(channel, ShmChannel):
        yield env
        return
    previous, channel.copy = channel.copy, enabled
    try:
        yield env
    finally:
        channel.copy = previous
