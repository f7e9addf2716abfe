"""SIGTERM turned into an exception, so a terminated command unwinds and cleans up as on Ctrl-C."""
import contextlib
import signal
import threading

from ..errors import Terminated

#: The conventional exit code of a process ended by SIGTERM (128 + 15).
TERMINATED_EXIT = 128 + signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
