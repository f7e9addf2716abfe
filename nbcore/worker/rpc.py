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
release    None                                       only releases ids
shutdown   None                                       ends the loop
=========  =========================================  ============================

Reply (worker -> host): ``(call_id, status, value)`` with status one of
``OK`` (value is the result), ``REF`` (value describes an object kept in the
worker), ``ERROR`` (value describes the exception) or ``STOP`` (the iterator
is exhausted).  Objects the host passes back (proxies) arrive through
:func:`lookup`.
"""
import collections.abc
import importlib
import itertools
import os
import pickle
import sys
import threading
import traceback

from . import cancel
from .allocation import set_active_channel
from .framing import ConnectionClosed

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
    object_id = next(_ids)
    _objects[object_id] = obj
    kind = type(obj)
    methods = frozenset(n for n in dir(kind) if not n.startswith("__") and callable(getattr(kind, n, None)))
    is_iterator = isinstance(obj, collections.abc.Iterator)
    return (object_id, "%s.%s" % (kind.__module__, kind.__qualname__), methods, is_iterator, callable(obj))


def _describe_error(exc):
    try:
        pickled = pickle.dumps(exc)
    except Exception:
        pickled = None
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (pickled, "%s.%s" % (type(exc).__module__, type(exc).__qualname__), str(exc), text)


class Worker:
    """Serves requests from one host connection until it shuts down or disappears."""

    def __init__(self, channel, control=None, exit_when_host_dies=True):
        self.channel = channel
        self.control = control
        self.exit_when_host_dies = exit_when_host_dies
        self._finished = False

    def serve(self):
        if self.control is not None:
            threading.Thread(target=self._watch_control, name="nbcore-control", daemon=True).start()
        channel = self.channel
        set_active_channel(channel)
        while True:
            try:
                call_id, op, target, args, kwargs, released = channel.recv()
            except ConnectionClosed:
                break
            for object_id in released:
                _objects.pop(object_id, None)
            if op == "shutdown":
                self._finished = True
                channel.send((call_id, OK, None))
                break
            if op == "release":
                continue
            self._run(call_id, op, target, args, kwargs)
        self._finished = True
        channel.close()

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
        except BaseException as exc:  # the host sees every failure, KeyboardInterrupt included
            self.channel.send((call_id, ERROR, _describe_error(exc)))
            return
        finally:
            cancel._set_current_call(None)
            cancel._forget(call_id)
        if keep_remote or (result is not None and isinstance(result, collections.abc.Iterator)):
            self.channel.send((call_id, REF, _keep(result)))
            return
        try:
            self.channel.send((call_id, OK, result))
        except (pickle.PicklingError, TypeError, AttributeError):
            self.channel.send((call_id, REF, _keep(result)))

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
