"""The worker's RPC loop: run the host's requests and send back results.

Request (host -> worker): ``(call_id, op, target, args, kwargs, released_ids)``

=========  =========================================  ============================
op         target                                     does
=========  =========================================  ============================
call       ``"module:qualname"`` or an object id       ``target(*args, **kwargs)``
method     ``(object_id, name)``                      ``getattr(obj, name)(...)``
getattr    ``(object_id, name)``                      ``getattr(obj, name)``
import     ``"module:qualname"``                      keep the object remote
next       iterator object id                         ``next(it)``
keep       call id of the last reply                  keep its result remote (REF)
release    None                                       only releases ids
shutdown   None                                       ends the loop
=========  =========================================  ============================

Reply (worker -> host): ``(call_id, status, value)`` with status one of
``OK`` (value is the result), ``REF`` (value describes an object kept in the
worker), ``ERROR`` (value describes the exception) or ``STOP`` (the iterator
is exhausted).  Objects the host passes back (proxies) arrive through
:func:`lookup`.

A result that does not pickle is sent as REF instead.  The worker holds the
result of its last OK reply until the next request: a host that cannot
unpickle it (its class or module is missing there) asks for it with ``keep``.
A request that does not unpickle here is answered with ERROR (call id None): an
exception of the unpickling error's type whose message names both sides'
Python and numpy versions.
"""
import collections.abc
import importlib
import itertools
import os
import sys
import threading

from . import cancel
from .allocation import set_active_channel
from .channel import DecodeError, EncodeError
from .framing import ConnectionClosed
from .pickling import dumps
from .versions import cannot_rebuild, this_side

OK, REF, ERROR, STOP = 0, 1, 2, 3

_objects = {}
_ids = itertools.count(1)
_targets = {}


def lookup(object_id):
    """Return the worker object behind a host proxy (used when unpickling requests)."""
    try:
        return _objects[object_id]
    except KeyError:
        raise LookupError("remote object %d was already released" % object_id) from None


def resolve(path):
    """Import ``module:qualname`` and return the object it names."""
    target = _targets.get(path)
    if target is None:
        module_name, _, qualname = path.partition(":")
        if not qualname:
            raise ValueError("expected 'module:qualname', got %r" % path)
        target = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        _targets[path] = target
    return target


def _keep(obj):
    """Store ``obj`` in the worker and return the reference sent to the host."""
    kind = type(obj)
    methods = frozenset(n for n in dir(kind) if not n.startswith("__") and callable(getattr(kind, n, None)))
    ref = ("%s.%s" % (kind.__module__, kind.__qualname__), methods, isinstance(obj, collections.abc.Iterator), callable(obj))
    object_id = next(_ids)
    _objects[object_id] = obj
    return (object_id,) + ref


def _text(produce, fallback):
    """``produce()`` when it returns a str; ``fallback`` when it raises anything or returns something else."""
    try:
        text = produce()
    except BaseException:  # user code (__str__, __repr__, metaclasses) must not end the worker
        return fallback
    return text if isinstance(text, str) else fallback


def _unreadable_request(exc, host):
    """What to raise on the host for a request that did not unpickle (``exc``, a :class:`DecodeError`):
    the unpickling error's type, with a message naming both sides and their versions."""
    error = exc.error
    message = cannot_rebuild("the environment", this_side(), "an argument", "the host", host, error, exc.culprit)
    try:
        explained = type(error)(message)
        if isinstance(error, ImportError):
            explained.name, explained.path = error.name, error.path
    except Exception:  # an exception type with a constructor of its own
        explained = RuntimeError(message)
    return explained.with_traceback(error.__traceback__)


def _describe_error(exc):
    """``(pickled exception or None, type name, message, traceback text)``, plain values only; never raises."""
    kind = type(exc)
    type_name = _text(lambda: "%s.%s" % (kind.__module__, kind.__qualname__), kind.__name__)
    message = _text(lambda: str(exc), None)
    pickled = None
    if message is None:  # rebuilt on the host, it would fail there too: send the description only
        message = _text(lambda: repr(exc), "<unprintable %s>" % kind.__name__)
    else:
        try:
            pickled = dumps(exc)
        except BaseException:
            pickled = None
    import traceback  # only failing calls need it: keep it out of the worker's start

    last_line = "%s: %s\n" % (type_name, message)
    text = _text(lambda: "".join(traceback.format_exception(kind, exc, exc.__traceback__)),
                 _text(lambda: "".join(traceback.format_tb(exc.__traceback__)) + last_line, last_line))
    return (pickled, type_name, message, text)


class Worker:
    """Serves requests from one host connection until it shuts down or disappears."""

    def __init__(self, channel, control=None, exit_when_host_dies=True):
        self.channel = channel
        self.control = control
        self.exit_when_host_dies = exit_when_host_dies
        self._finished = False
        #: ``(call_id, result)`` of the last OK reply, held until the next request (see ``keep``).
        self._last_reply = None

    def serve(self):
        if self.control is not None:
            threading.Thread(target=self._watch_control, name="nbcore-control", daemon=True).start()
        set_active_channel(self.channel)
        try:
            self._loop(self.channel)
        except ConnectionClosed:
            pass
        self._finished = True
        self.channel.close()

    def _loop(self, channel):
        while True:
            try:
                call_id, op, target, args, kwargs, released = channel.recv()
            except DecodeError as exc:  # e.g. an argument whose class exists only on the host
                self._send_error(None, _unreadable_request(exc, channel.peer))
                continue
            if op == "keep":
                self._send_kept(call_id, target)
                continue
            self._last_reply = None
            for object_id in released:
                _objects.pop(object_id, None)
            if op == "shutdown":
                self._finished = True
                channel.send((call_id, OK, None))
                return
            if op == "release":
                continue
            self._run(call_id, op, target, args, kwargs)

    def _run(self, call_id, op, target, args, kwargs):
        cancel._set_current_call(call_id)
        keep_remote = False
        try:
            if op == "call":
                func = resolve(target) if isinstance(target, str) else _objects[target]
                keep_remote = isinstance(func, type)
                result = func(*args, **kwargs)
            elif op == "method":
                result = getattr(_objects[target[0]], target[1])(*args, **kwargs)
            elif op == "next":
                try:
                    result = next(_objects[target])
                except StopIteration:
                    self.channel.send((call_id, STOP, None))
                    return
            elif op == "getattr":
                result = getattr(_objects[target[0]], target[1])
            elif op == "import":
                result, keep_remote = resolve(target), True
            else:
                raise ValueError("unknown request %r" % (op,))
        except BaseException as exc:  # the host sees every failure, SystemExit and KeyboardInterrupt included
            self._send_error(call_id, exc)
            return
        finally:
            cancel._set_current_call(None)
            cancel._forget(call_id)
        if keep_remote or (result is not None and isinstance(result, collections.abc.Iterator)):
            self._send_ref(call_id, result)
            return
        try:
            self.channel.send((call_id, OK, result))
        except EncodeError:  # unpicklable, nested too deep, a failing __reduce__: the result stays here
            self._send_ref(call_id, result)
            return
        self._last_reply = (call_id, result)

    def _send_ref(self, call_id, obj):
        """Keep ``obj`` in the worker and send its reference; send the error when even that fails."""
        try:
            ref = _keep(obj)
        except Exception as exc:
            self._send_error(call_id, exc)
            return
        self.channel.send((call_id, REF, ref))

    def _send_kept(self, call_id, reply_id):
        """Answer ``keep``: the result of the last reply, ``reply_id``, as a reference."""
        last, self._last_reply = self._last_reply, None
        if last is None or last[0] != reply_id:
            self._send_error(call_id, LookupError("the worker no longer holds the result of call %r" % (reply_id,)))
        else:
            self._send_ref(call_id, last[1])

    def _send_error(self, call_id, exc):
        self.channel.send((call_id, ERROR, _describe_error(exc)))

    def _watch_control(self):
        while True:
            try:
                message = self.control.recv()
            except Exception:
                break
            if message[0] == "cancel":
                cancel._request(message[1])
        if self.exit_when_host_dies and not self._finished:
            try:  # the host may have taken our stderr pipe with it: never let that stop the exit
                sys.stderr.write("nbcore worker: the host went away; exiting\n")
                sys.stderr.flush()
            except Exception:
                pass
            os._exit(3)

    def close(self):
        """Close both connections, ending :meth:`serve`; for launchers that stop a worker from outside."""
        self._finished = True
        self.channel.close()
        if self.control is not None:
            self.control.close()
