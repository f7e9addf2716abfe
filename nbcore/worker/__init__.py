"""Worker-side nbcore: the code the host injects into an isolated environment.

Everything under ``nbcore.worker`` imports only the standard library (numpy is
optional, any version since 1.16) and runs on Python 3.7+, because the
environment it runs in does not have nbcore installed.  Code running inside a worker may use::

    from nbcore.worker import is_cancelled, check_cancelled, allocate_ndarray, run_ahead

to cooperate with cancellation requested by the host, to build results
where the active protocol sends them from (no copy with ``shm-pickle``), and
to let a generator make its next items while the host receives the current one.
Host callables passed as arguments arrive as proxies (see :mod:`.callbacks`);
``HostUnavailable`` and ``HostError`` are what calling one may raise.

The worker modules of protocol plugins build on :class:`Channel`, the
message pickling (``Pickling``, ``unpickle``: numpy objects in a form every
numpy version rebuilds) and the framing helpers exported here
(``ConnectionClosed``, ``ProtocolError``, ``EncodeError``, ``DecodeError``,
``write_all``, ``pooled_buffer``); this package is all they may import of nbcore.
"""
import sys

from .versions import MINIMUM_PYTHON, TOO_OLD_EXIT

if sys.version_info < MINIMUM_PYTHON:  # stop before the first syntax or module a worker this old lacks
    sys.stderr.write("the environment runs Python %d.%d; nbcore needs Python %d.%d or newer there (3.8+ for "
                     "shm-pickle): ask for a newer python in its spec\n" % (sys.version_info[:2] + MINIMUM_PYTHON))
    raise SystemExit(TOO_OLD_EXIT)
from .allocation import allocate_buffer, allocate_ndarray
from .callbacks import HostError, HostUnavailable
from .cancel import CancelledError, check_cancelled, is_cancelled
from .channel import Channel, DecodeError, EncodeError
from .framing import ConnectionClosed, ProtocolError, write_all
from .framing import allocate as pooled_buffer
from .pickling import Pickling, unpickle
from .run_ahead import run_ahead

__all__ = ["CancelledError", "Channel", "ConnectionClosed", "DecodeError", "EncodeError", "HostError", "HostUnavailable",
           "Pickling", "ProtocolError", "allocate_buffer", "allocate_ndarray", "check_cancelled",
           "is_cancelled", "pooled_buffer", "run_ahead", "unpickle", "write_all"]
