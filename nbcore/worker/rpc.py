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
import itertools
import os
import pickle
import sys
import threading

from . import callbacks, cancel
from .allocation import set_active_channel
from .channel import DecodeError, EncodeError
from .descendants import end_descendants
from .framing import ConnectionClosed
from .pickling import dumps, unpickle
from .versions import cannot_rebuild, this_side

OK, REF, ERROR, STOP, CALLBACK, RELEASE = 0, 1, 2, 3, 4, 5

_objects = {}
_ids = itertools.count(1)
_targets = {}
#: The spec's ``pythonpath:`` folders, as put on ``sys.path``.
_import_paths = []


def lookup(object_id):
    """Return the worker object behind a host proxy (used when unpickling requests)."""
    try:
        return _objects[object_id]
    except KeyError:
        raise LookupError("remote object %d was already released" % object_id) from None


def add_import_paths(paths):
    """Put the spec's ``pythonpath:`` folders first on ``sys.path`` (and name them in import errors)."""
    for folder in reversed(paths):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    _import_paths[:0] = [p for p in paths if p not in _import_paths]


def import_module(name):
    """Import the module ``name`` (absolute) and return it: ``importlib.import_module`` without importing
    importlib and warnings on every worker's start."""
    __import__(name)
    return sys.modules[name]


def resolve(path):
    """Import ``module:qualname`` and return the object it names.

    A failure is raised with a one-line message saying where the worker looked, and with the
    attribute ``nbcore_target`` (the path) so that the host can tell it from a failure of the call.
    """
    target = _targets.get(path)
    if target is None:
        module_name, _, qualname = path.partition(":")
        if not qualname:
            raise ValueError("expected 'module:qualname', got %r" % path)
        try:
            target = import_module(module_name)
        except ModuleNotFoundError as exc:
            raise _target_error(ModuleNotFoundError("%s (importing %s; %s)" % (exc, path, _where_imports_come_from()),
                                                    name=exc.name), path) from None
        for part in qualname.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                import difflib  # only failing imports need it: keep it out of the worker's start

                names = [n for n in dir(target) if not n.startswith("_")]
                close = difflib.get_close_matches(part, names, n=1)
                hint = "; did you mean %r?" % close[0] if close else ""
                raise _target_error(AttributeError("%s has no attribute %r (target %s%s)"
                                                   % (_describe_owner(target), part, path, hint)), path) from None
        _targets[path] = target
    return target


def _target_error(exc, path):
    exc.nbcore_target = path
    return exc


def _describe_owner(obj):
    if isinstance(obj, type(sys)):
        where = getattr(obj, "__file__", None)
        return "module %r%s" % (obj.__name__, " (%s)" % where if where else "")
    return repr(obj) if isinstance(obj, type) else "%s object" % type(obj).__name__


def _where_imports_come_from():
    extra = ", ".join(_import_paths) or "none (set pythonpath: in the spec)"
    return "the worker's working directory is %s (set cwd: in the spec to change it), extra import paths: %s" % (
        os.getcwd(), extra)


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


def describe_error(exc):
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


def rebuild_error(value, stand_in, carrier):
    """The exception an ERROR answer (:func:`describe_error` of the other side) stands for: the other side's own
    when it unpickles here and is an ``Exception``, else ``stand_in(type name, message)`` (so ``SystemExit`` and
    ``KeyboardInterrupt`` never end this side); its ``__cause__`` is ``carrier(traceback text)``."""
    pickled, type_name, message, text = value
    exc = None
    if pickled is not None:
        try:
            exc = pickle.loads(pickled)
            str(exc)
        except Exception:
            exc = None
    if not isinstance(exc, Exception):
        exc = stand_in(type_name, message)
    exc.__cause__ = carrier(text)
    return exc


class Worker:
    """Serves requests from one host connection until it shuts down or disappears."""

    def __init__(self, channel, control=None, exit_when_host_dies=True):
        self.channel = channel
        self.control = control
        self.exit_when_host_dies = exit_when_host_dies
        self._finished = False
        #: ``(call_id, result)`` of the last OK reply, held until the next request (see ``keep``).
        self._last_reply = None
        #: Held while a message that needs the host's attention is sent and, for a callback, answered.
        self._wire = threading.RLock()
        #: Requests in progress (more than one when a callback called into this worker again).
        self._depth = 0
        #: Set once a proxy of a host object exists in this worker (only then may other threads call the host).
        self.has_host_proxies = False
        self._callback_ids = itertools.count(1)
        #: Ids of host objects whose proxies the worker dropped, told to the host with the next message.
        self._released_host = []

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
        while self._handle(self._receive()):
            pass

    def _receive(self):
        """The next request, or None when it could not be unpickled (answered with ERROR)."""
        callbacks._receiving.worker = self
        try:
            return self.channel.recv()
        except DecodeError as exc:  # e.g. an argument whose class exists only on the host
            self._send_error(None, _unreadable_request(exc, self.channel.peer))
            return None

    def _handle(self, message):
        """Serve one request; False when it was ``shutdown``."""
        if message is None:
            return True
        call_id, op, target, args, kwargs, released = message
        if op == "keep":
            self._send_kept(call_id, target)
            return True
        self._last_reply = None
        if released:
            self._release(released)
        if op == "shutdown":
            self._finished = True
            self.channel.send((call_id, OK, None))
            return False
        if op == "release":
            return True
        if op == "answer":  # for a callback that is no longer waiting: nothing to do
            return True
        self._run(call_id, op, target, args, kwargs)
        return True

    @staticmethod
    def _release(object_ids):
        for object_id in object_ids:
            _objects.pop(object_id, None)
            cancel._end_iteration(object_id)

    def _run(self, call_id, op, target, args, kwargs):
        outer = cancel._set_current_call(call_id, target if op == "next" else None)
        # no lock needed to count up: a request starts in the thread reading the channel, and no
        # callback of another thread can be waiting then (they run only while a request does)
        self._depth += 1
        reply = None
        try:
            reply = self._execute(op, target, args, kwargs)
        finally:
            cancel._set_current_call(*outer)
            cancel._forget(call_id)
            if self.has_host_proxies:  # a callback from another thread either ends before the reply or sees depth 0
                with self._wire:
                    self._depth -= 1
                    self._finish(call_id, reply)
            else:  # no host proxy exists: no other thread can talk to the host
                self._depth -= 1
                self._finish(call_id, reply)

    def _finish(self, call_id, reply):
        if reply is None:
            return
        status, value = reply
        if status == OK and not self._released_host:
            try:
                self.channel.send((call_id, OK, value))
            except EncodeError:  # unpicklable, nested too deep, a failing __reduce__: the result stays here
                self._send_ref(call_id, value)
            else:
                self._last_reply = (call_id, value)
        else:
            self._send_reply(call_id, status, value)

    def _execute(self, op, target, args, kwargs):
        """Run one request; ``(status, value)`` of its reply (``value`` is the object itself for REF)."""
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
                    cancel._end_iteration(target)
                    return STOP, None
            elif op == "getattr":
                result = getattr(_objects[target[0]], target[1])
            elif op == "import":
                result, keep_remote = resolve(target), True
            else:
                raise ValueError("unknown request %r" % (op,))
        except BaseException as exc:  # the host sees every failure, SystemExit and KeyboardInterrupt included
            if op == "next":
                cancel._end_iteration(target)
            return ERROR, exc
        if keep_remote or (result is not None and isinstance(result, collections.abc.Iterator)):
            return REF, result
        return OK, result

    def _send_reply(self, call_id, status, value):
        if status == OK:
            try:
                self._reply((call_id, OK, value))
            except EncodeError:  # unpicklable, nested too deep, a failing __reduce__: the result stays here
                self._send_ref(call_id, value)
                return
            self._last_reply = (call_id, value)
        elif status == REF:
            self._send_ref(call_id, value)
        elif status == ERROR:
            self._send_error(call_id, value)
        else:
            self._reply((call_id, status, value))

    def _reply(self, message):
        """Send a reply, after telling the host which of its objects the worker dropped."""
        with self._wire:
            if self._released_host:
                released, self._released_host = self._released_host, []
                self.channel.send((None, RELEASE, released))
            self.channel.send(message)

    def call_host(self, op, target, args, kwargs, what):
        """Run a host callback (see :mod:`.callbacks`) and return its result or raise its exception."""
        with self._wire:
            if self._depth == 0:
                raise callbacks.HostUnavailable(
                    "%s can only be called while the host waits for this environment (during a call into it or "
                    "a next() of its generator); return the values instead, or pass the callback to each call" % what)
            try:
                payload = dumps((op, target, args, kwargs), self.channel.pickle_protocol)
            except Exception as exc:
                raise TypeError("the arguments for %s cannot be pickled (%s: %s); pass plain values"
                                % (what, type(exc).__name__, exc)) from None
            callback_id = next(self._callback_ids)
            released, self._released_host = self._released_host, []
            self.channel.send((callback_id, CALLBACK, (payload, released)))
            while True:
                message = self._receive()
                if message is not None and message[1] == "answer" and message[0] == callback_id:
                    break
                if not self._handle(message):  # the host closed the environment from inside the callback
                    raise ConnectionClosed("the host closed the environment during %s" % what)
            self._release(message[5])
        status, value = message[2]
        if status == OK:
            callbacks._receiving.worker = self
            try:
                return unpickle(value)
            except DecodeError as exc:
                raise TypeError("the result of %s cannot be rebuilt in the worker (%s); return plain values"
                                % (what, exc)) from None
        if status == REF:
            return callbacks.HostProxy(self, *value)
        error = rebuild_error(value, callbacks.HostError, callbacks.HostTraceback)
        if isinstance(error, cancel.CancelledError):  # Ctrl-C on the host: the cancel on the control link may lag
            cancel._request_current()
        raise error

    def release_host_object(self, object_id):
        """Called when a host proxy is dropped: the host hears it with the next message."""
        self._released_host.append(object_id)

    def _send_ref(self, call_id, obj):
        """Keep ``obj`` in the worker and send its reference; send the error when even that fails."""
        try:
            ref = _keep(obj)
        except Exception as exc:
            self._send_error(call_id, exc)
            return
        self._reply((call_id, REF, ref))

    def _send_kept(self, call_id, reply_id):
        """Answer ``keep``: the result of the last reply, ``reply_id``, as a reference."""
        last, self._last_reply = self._last_reply, None
        if last is None or last[0] != reply_id:
            self._send_error(call_id, LookupError("the worker no longer holds the result of call %r" % (reply_id,)))
        else:
            self._send_ref(call_id, last[1])

    def _send_error(self, call_id, exc):
        self._reply((call_id, ERROR, describe_error(exc)))

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
            end_descendants()
            os._exit(3)

    def close(self):
        """Close both connections, ending :meth:`serve`; for launchers that stop a worker from outside."""
        self._finished = True
        self.channel.close()
        if self.control is not None:
            self.control.close()
