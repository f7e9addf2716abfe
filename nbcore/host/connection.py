"""The host side of the RPC: a connection to one worker and the proxies of remote objects."""
import itertools
import sys
import threading
import time

from ..errors import RemoteError, RemoteTraceback, ResultError, Terminated, WorkerError
from ..worker import callbacks
from ..worker.cancel import CancelledError
from ..worker.channel import DecodeError, EncodeError
from ..worker.framing import ConnectionClosed, ProtocolError
from ..worker.rpc import CALLBACK, ERROR, OK, REF, RELEASE, STOP, describe_error, lookup, rebuild_error
from ..worker.pickling import dumps, unpickle
from ..worker.versions import cannot_rebuild, this_side
from .callbacks import lend, lend_callables, lend_result

SHUTDOWN_GRACE = 5.0
#: Errors of unpickling a result that mean the host lacks its code; such a result comes back as a proxy.
MISSING_CODE = (ImportError, AttributeError)


class Connection:
    """Sends requests to a worker and turns its replies into values, proxies or exceptions.

    Thread-safe: concurrent requests are serialised.  Host callables passed as
    arguments are lent to the worker (:mod:`nbcore.host.callbacks`); when the
    worker calls one, it runs here, in the thread waiting for the call.  Such a
    callback may call into the same environment again (a nested request on
    this connection, served by the worker while it waits for the callback).
    """

    #: Seconds :meth:`close` waits for a running call and then for the worker to exit before it kills it.
    shutdown_grace = SHUTDOWN_GRACE

    def __init__(self, channel, control, process):
        self.channel = channel
        self.control = control
        self.process = process
        self._ids = itertools.count(1)
        self._lock = threading.RLock()  # re-entrant: a callback may call into the worker again
        self._released = []
        #: Ids of host objects lent to the worker and not yet released by it.
        self._lent = set()
        self._closed = False
        self._failure = None
        #: The id of the request waiting for its reply (None when idle), for :meth:`cancel` from another thread.
        self.current_call = None

    @property
    def protocol(self) -> str:
        """The negotiated protocol name, e.g. ``tcp-pickle5-buffers``."""
        return self.channel.name

    def release(self, object_id):
        """Forget a remote object; the worker drops it with the next request."""
        self._released.append(object_id)

    def request(self, op, target, args=(), kwargs=None):
        if self._closed:
            raise WorkerError("the environment was closed; open it again to call into it")
        if self._failure is not None:
            raise WorkerError(self._failure)
        lent = []
        args, kwargs = lend_callables(args, kwargs or {}, lent)
        with self._lock:
            self._lent.update(lent)
            call_id = next(self._ids)
            released, self._released = self._released, []
            outer_call, self.current_call = self.current_call, call_id
            try:
                try:
                    self.channel.send((call_id, op, target, args, kwargs, released))
                except EncodeError as exc:  # nothing was sent: the arguments' own error
                    self._released.extend(released)
                    self._take_back(lent)
                    raise exc.error from None
                except (ConnectionClosed, OSError) as exc:
                    self._fail(exc)
                reply = self._wait_reply(call_id, target)
                if reply[0] is None:  # the worker could not read the request: it released nothing either
                    self._released.extend(released)
                    self._take_back(lent)
            finally:
                self.current_call = outer_call
        return self._unpack(reply)

    def _wait_reply(self, call_id, target):
        """The reply to ``call_id``.  Ctrl-C cancels the call (saying so once on stderr), waits for it to end,
        then re-raises; a second Ctrl-C kills the worker."""
        try:
            return self._recv(call_id)
        except KeyboardInterrupt as interrupt:
            self.cancel(call_id)
            if not isinstance(interrupt, Terminated) and not getattr(interrupt, "nbcore_announced", False):
                _say("nbcore: cancelling the call to %s; press Ctrl-C again to stop the worker" % _describe_target(target))
                interrupt.nbcore_announced = True  # an outer call (this one ran inside a callback) says nothing more
            try:
                reply = self._recv(call_id)
            except ResultError:
                raise interrupt from None
            except KeyboardInterrupt:
                self.process.kill()
                self._failure = "the worker was killed after a second interrupt"
                raise
            if reply[1] == REF:
                self.release(reply[2][0])
            raise

    def _recv(self, call_id):
        """The reply to ``call_id``, serving the worker's callbacks meanwhile."""
        while True:
            reply = self._recv_message(call_id)
            if reply[1] == CALLBACK:
                self._serve_callback(call_id, reply[0], *reply[2])
            else:
                return reply

    def _recv_message(self, call_id):
        """The next message other than RELEASE (which is handled here)."""
        while True:
            try:
                message = self.channel.recv()
            except DecodeError as exc:
                return self._keep_unreadable(call_id, exc)
            except (ConnectionClosed, ProtocolError, OSError) as exc:
                self._fail(exc)
            if message[1] != RELEASE:
                return message
            self._take_back(message[2])

    def _take_back(self, object_ids):
        callbacks.take_back(object_ids)
        self._lent.difference_update(object_ids)

    def _serve_callback(self, call_id, callback_id, payload, released):
        """Run a host callback the worker asked for (in this thread) and send the answer."""
        self._take_back(released)
        interrupted = None
        try:
            op, target, args, kwargs = unpickle(payload)
            if op == "call":
                result = callbacks.host_object(target)(*args, **kwargs)
            elif op == "method":
                result = getattr(callbacks.host_object(target[0]), target[1])(*args, **kwargs)
            elif op == "getattr":
                result = getattr(callbacks.host_object(target[0]), target[1])
            else:
                raise ValueError("unknown callback request %r" % (op,))
            answer = self._answer_value(result)
        except KeyboardInterrupt as exc:  # Ctrl-C in the callback: the call is cancelled, the worker hears why
            interrupted = exc
            self.cancel(call_id)
            answer = (ERROR, describe_error(CancelledError("the host was interrupted during the callback")))
        except BaseException as exc:  # the worker sees every failure of the callback, as the host sees the worker's
            answer = (ERROR, describe_error(exc))
        answer_released, self._released = self._released, []
        try:
            self.channel.send((callback_id, "answer", answer, (), {}, answer_released))
        except (ConnectionClosed, OSError) as exc:
            self._fail(exc)
        if interrupted is not None:
            raise interrupted

    def _answer_value(self, result):
        """A callback's result for the worker: ``(OK, pickled result)``, or ``(REF, description)`` when it does not pickle."""
        lent = []
        try:
            value = (OK, dumps(lend_result(result, lent), self.channel.pickle_protocol))
        except Exception:
            self._take_back(lent)
            lent = []
            marker = lend(result, lent)
            value = (REF, (marker.object_id,) + marker.description)
        self._lent.update(lent)
        return value

    def _keep_unreadable(self, call_id, failure):
        """The reply to ``call_id`` did not unpickle here (``failure``, a :class:`DecodeError`): ask the
        worker for its result as a proxy (a REF reply).

        Raises :class:`ResultError` when the host has the code but rebuilding failed (numpy's own
        objects included: a proxy of an array helps nobody), or the worker cannot hand the result over.
        """
        peer = self.channel.peer
        try:
            self.channel.send((next(self._ids), "keep", call_id, (), {}, []))
            reply = self.channel.recv()
            while reply[1] == RELEASE:
                self._take_back(reply[2])
                reply = self.channel.recv()
        except DecodeError as exc:
            raise ResultError(describe_unreadable(None, exc, peer)) from None
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            self._fail(exc)
        if reply[1] != REF:
            raise ResultError(describe_unreadable(None, failure, peer)) from None
        culprit = failure.culprit or ""
        if not isinstance(failure.error, MISSING_CODE) or culprit.split(".")[0] == "numpy":
            self.release(reply[2][0])
            raise ResultError(describe_unreadable(reply[2][1], failure, peer)) from None
        return reply

    def _fail(self, exc):
        code = self.process.wait(1.0)
        tail = self.process.output_tail().strip()
        if self._closed:
            message = "the environment was closed during the call, and its worker stopped"
            tail = ""
        elif code is not None:
            message = "the worker died (exit code %s)" % code
        elif isinstance(exc, ProtocolError):
            message = "the worker sent a corrupt message (%s)" % exc
        else:
            message = "lost the connection to the worker (%s)" % exc
        if tail:
            message += "; its last output:\n" + tail
        self._failure = message
        self.process.kill()
        raise WorkerError(message) from None

    def cancel(self, call_id):
        """Ask the worker to cancel ``call_id`` (the code running there polls for it)."""
        try:
            self.control.send(("cancel", call_id))
        except OSError:
            pass

    def _unpack(self, reply):
        _, status, value = reply
        if status == OK:
            return value
        if status == REF:
            return make_proxy(self, value)
        if status == STOP:
            raise StopIteration
        if status == ERROR:
            raise rebuild_error(value, RemoteError, RemoteTraceback)
        raise WorkerError("the worker sent an unknown reply status %r" % (status,))

    def close(self):
        """Shut the worker down and close the channels; returns within :attr:`shutdown_grace` seconds
        (plus the kill).

        Asks the worker to exit once no call is running; a call still running after the grace period,
        or a worker that does not exit, is killed (a request waiting in another thread then raises
        :class:`WorkerError`).
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.shutdown_grace
        if self._failure is None and self.process.poll() is None and self._lock.acquire(timeout=self.shutdown_grace):
            try:
                self.channel.send((0, "shutdown", None, (), {}, []))
            except (ConnectionClosed, OSError):
                pass
            finally:
                self._lock.release()
            # the control connection stays open until the worker has exited: closing it means "the host died"
            self.process.wait(max(0.0, deadline - time.monotonic()))
        self.process.kill()  # reaps and joins output readers; a no-op for ended workers
        self.channel.close()
        self.control.close()
        self._take_back(list(self._lent))


def _say(line):
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except Exception:  # a closed stderr must not turn Ctrl-C into another error
        pass


def _describe_target(target):
    if isinstance(target, str):
        return target
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[1], str):
        return "method %s" % target[1]
    return "a remote object"


def describe_unreadable(type_name, failure, worker_versions=None):
    """The message of a :class:`ResultError`: what could not be rebuilt (``failure``, a
    :class:`DecodeError`), on which side and versions, why, and the fixes."""
    error = failure.error
    text = cannot_rebuild("the host", this_side(), "the result", "the environment", worker_versions, error,
                          failure.culprit, type_name)
    if "env.remote()" in text:  # the numpy hint already says what to do
        return text
    if isinstance(error, MISSING_CODE):
        module = getattr(error, "name", None) or (type_name or "").rpartition(".")[0] or "its module"
        fixes = "install %s on the host, return plain types, or keep it remote with env.remote()" % module
    else:
        fixes = "return plain types, or keep it remote with env.remote()"
    return "%s; %s" % (text, fixes)


def make_proxy(connection, ref):
    object_id, type_name, methods, is_iterator, is_callable = ref
    cls = RemoteIterator if is_iterator else RemoteObject
    return cls(connection, object_id, type_name, methods)


class RemoteObject:
    """A proxy for an object that lives in the worker.

    Method calls and attribute reads go to the worker; passing the proxy as an
    argument hands the worker the real object; dropping the last reference
    frees it there.
    """

    __slots__ = ("_nb_connection", "_nb_id", "_nb_type", "_nb_methods", "__weakref__")

    def __init__(self, connection, object_id, type_name, methods):
        object.__setattr__(self, "_nb_connection", connection)
        object.__setattr__(self, "_nb_id", object_id)
        object.__setattr__(self, "_nb_type", type_name)
        object.__setattr__(self, "_nb_methods", methods)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._nb_methods:
            return RemoteMethod(self, name)
        return self._nb_connection.request("getattr", (self._nb_id, name))

    def __call__(self, *args, **kwargs):
        return self._nb_connection.request("call", self._nb_id, args, kwargs)

    def __reduce__(self):
        return lookup, (self._nb_id,)

    def __repr__(self):
        return "<remote %s #%d>" % (self._nb_type, self._nb_id)

    def __del__(self):
        try:
            self._nb_connection.release(self._nb_id)
        except Exception:
            pass


class RemoteIterator(RemoteObject):
    """A proxy for a worker-side iterator or generator; items stream one by one."""

    __slots__ = ()

    def __iter__(self):
        return self

    def __next__(self):
        return self._nb_connection.request("next", self._nb_id)


class RemoteMethod:
    """A bound method of a remote object."""

    __slots__ = ("owner", "name")

    def __init__(self, owner, name):
        self.owner = owner
        self.name = name

    def __call__(self, *args, **kwargs):
        return self.owner._nb_connection.request("method", (self.owner._nb_id, self.name), args, kwargs)

    def __reduce__(self):  # passed back as an argument: the worker's own bound method
        return getattr, (self.owner, self.name)

    def __repr__(self):
        return "<remote method %s of %r>" % (self.name, self.owner)
