"""Cooperative cancellation: the host asks, the worker's code polls.

A cancel names a call.  When that call is a ``next()`` of a generator (or the
last ``next()`` it ran, the cancel landing between two items), the whole
iteration is cancelled: :func:`is_cancelled` stays true in that generator
until it ends or the host drops it.
"""
import threading

_state = threading.local()
_requested = set()
#: Ids of iterators (worker objects) whose iteration was cancelled.
_cancelled_iterations = set()
#: Iterator id -> call id of its latest ``next()``.
_last_next = {}
_lock = threading.Lock()
_IDLE = (None, None)


class CancelledError(Exception):
    """Raised by :func:`check_cancelled` when the host cancelled the running call."""


def _set_current_call(call_id, iteration=None):
    """Make ``call_id`` (a ``next()`` of iterator ``iteration`` when given) this thread's call; return the previous pair."""
    previous = _current()
    _state.current = (call_id, iteration)
    if iteration is not None:
        with _lock:
            _last_next[iteration] = call_id
            if call_id in _requested:  # the cancel came before this next() started
                _cancelled_iterations.add(iteration)
    return previous


def _current():
    """This thread's ``(call id, iteration)``."""
    return getattr(_state, "current", _IDLE)


def _adopt(current):
    """Make this thread work for ``current``, another thread's ``(call id, iteration)`` (run-ahead generators)."""
    _state.current = current


def _request(call_id):
    with _lock:
        _requested.add(call_id)
        for iteration, last_call in _last_next.items():
            if last_call == call_id:
                _cancelled_iterations.add(iteration)


def _request_current():
    """Cancel the call this thread is running (the host said so in another way than the control link)."""
    call_id = getattr(_state, "current", _IDLE)[0]
    if call_id is not None:
        _request(call_id)


def _forget(call_id):
    if _requested:
        with _lock:
            _requested.discard(call_id)


def _end_iteration(iteration):
    """The iterator ended (or was dropped): a later one starts uncancelled."""
    if iteration in _last_next:
        with _lock:
            _last_next.pop(iteration, None)
            _cancelled_iterations.discard(iteration)


def is_cancelled():
    """Return True when the host has asked to cancel the call this thread is running (or the iteration it belongs to)."""
    call_id, iteration = getattr(_state, "current", _IDLE)
    if call_id is None:
        return False
    if call_id in _requested:
        return True
    return bool(_cancelled_iterations) and iteration in _cancelled_iterations


def check_cancelled():
    """Raise :class:`CancelledError` when the host has cancelled the running call."""
    if is_cancelled():
        raise CancelledError("the call was cancelled by the host")
