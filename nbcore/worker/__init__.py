"""Worker-side nbcore: the code the host injects into an isolated environment.

Everything under ``nbcore.worker`` imports only the standard library (numpy is
optional) and runs on Python 3.8+, because the environment it runs in does not
have nbcore installed.  Code running inside a worker may use::

    from nbcore.worker import is_cancelled, check_cancelled, allocate_ndarray

to cooperate with cancellation requested by the host, and to build results
where the active protocol sends them from (no copy with ``shm-pickle``).
"""
from .allocation import allocate_buffer, allocate_ndarray
from .cancel import CancelledError, check_cancelled, is_cancelled

__all__ = ["CancelledError", "allocate_buffer", "allocate_ndarray", "check_cancelled", "is_cancelled"]
