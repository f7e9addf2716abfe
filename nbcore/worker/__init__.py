"""Worker-side nbcore: the code the host injects into an isolated environment.

Everything under ``nbcore.worker`` imports only the standard library (numpy is
optional) and runs on Python 3.8+, because the environment it runs in does not
have nbcore installed.  Code running inside a worker may use::

    from nbcore.worker import is_cancelled, check_cancelled

to cooperate with cancellation requested by the host.
"""
from .cancel import CancelledError, check_cancelled, is_cancelled

__all__ = ["CancelledError", "check_cancelled", "is_cancelled"]
