"""Worker-side nbcore: the code the host injects into an isolated environment.

Everything under ``nbcore.worker`` imports only the standard library (numpy is
optional) and runs on Python 3.8+, because the environment it runs in does not
have nbcore installed.  Code running inside a worker may use::

    from nbcore.worker import is_cancelled, check_cancelled, allocate_ndarray

to cooperate with cancellation requested by the host, and to build results
where the active protocol sends them from (no copy with ``shm-pickle``).
Host callables passed as arguments arrive as proxies (see :mod:`.callbacks`);
``HostUnavailable`` and ``HostError`` are what calling one may raise.

The worker modules of protocol plugins build on :class:`Channel` and the
framing helpers exported here (``ConnectionClosed``, ``ProtocolError``,
``EncodeError``, ``DecodeError``, ``write_all``, ``pooled_buffer``); this package is all they may import of nbcore.
"""
from .allocation import allocate_buffer, allocate_ndarray
from .callbacks import HostError, HostUnavailable
from .cancel import CancelledError, check_cancelled, is_cancelled
from .channel import Channel, DecodeError, EncodeError
from .framing import ConnectionClosed, ProtocolError, write_all
from .framing import allocate as pooled_buffer

__all__ = ["CancelledError", "Channel", "ConnectionClosed", "DecodeError", "EncodeError", "HostError", "HostUnavailable",
           "ProtocolError", "allocate_buffer", "allocate_ndarray",
           "check_cancelled", "is_cancelled", "pooled_buffer", "write_all"]
