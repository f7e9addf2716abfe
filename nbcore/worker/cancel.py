"""Cooperative cancellation: the host asks, the worker's code polls."""
import threading

_state = threading.local()
_requested = set()
_lock = threading.Lock()


class CancelledError(Exception):
    """Raised by :func:`check_cancelled` when the host cancelled the running call."""


def _set_current_call(call_id):
    _state.call_id = call_id


def _request(call_id):
    with _lock:
        _requested.add(call_id)


def _forget(call_id):
    if _requested:
        with _lock:
            _requested.discard(call_id)


def is_cancelled():
    """Return True when the host has asked to cancel the call this thread is running."""
    call_id = getattr(_state, "call_id", None)
    return call_id is not None and call_id in _requested


def check_cancelled():
    """Raise :class:`CancelledError` when the host has cancelled the running call."""
    if is_cancelled():
        raise CancelledError("the call was cancelled by the host")
