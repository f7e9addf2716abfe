"""Host callables in the worker: the table the host lends them from, and the proxies the worker calls.

A function, bound method, lambda, builtin or ``functools.partial`` the host
passes as an argument (also inside lists, tuples, sets and dict values) is
*lent*: the host keeps it in :data:`_lent` and the worker receives a
:class:`HostProxy`.  Calling the proxy sends a ``CALLBACK`` message on the
connection the host is waiting on; the host runs the callable in the thread
that made the call and answers with its result (by value, or as another
proxy when it does not pickle) or its exception.  A host result that does not
pickle comes back as a :class:`HostProxy` too (attributes and methods go to
the host).  A proxy passed back to the host (as an argument of a callback,
or in a result) arrives as the host's own object.

Callbacks run only while the host waits for this worker (a call, or the
``next`` of a generator, is in progress); at any other time calling one raises
:class:`HostUnavailable`.  Dropping the last proxy in the worker tells the host
to let go of the callable.

This module is worker-side code: standard library only.
"""
import itertools
import threading

#: Callables the host lent to workers, by id (filled on the host only).
_lent = {}
_lent_ids = itertools.count(1)
#: The worker whose thread is reading a message: proxies unpickled there belong to it.
_receiving = threading.local()


class HostUnavailable(RuntimeError):
    """A host callback was called while the host was not waiting for this worker."""


class HostError(Exception):
    """An exception raised by a host callback whose class does not exist (or rebuild) in the worker."""

    def __init__(self, type_name, message):
        super().__init__("%s: %s" % (type_name, message))
        self.type_name = type_name


class HostTraceback(Exception):
    """Carries the host's traceback text; set as ``__cause__`` of exceptions raised by host callbacks."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return "\n\nTraceback on the host:\n" + self.text


def lend(obj):
    """Host side: keep ``obj`` for the worker and return its id."""
    object_id = next(_lent_ids)
    _lent[object_id] = obj
    return object_id


def take_back(object_ids):
    """Host side: forget lent objects (the worker dropped their proxies, or the connection closed)."""
    for object_id in object_ids:
        _lent.pop(object_id, None)


def host_object(object_id):
    """Host side, when unpickling: the lent object behind a proxy the worker sent back."""
    try:
        return _lent[object_id]
    except KeyError:
        raise LookupError("host object %d was already released" % object_id) from None


def host_proxy(object_id, type_name, methods, is_callable):
    """Worker side, when unpickling: the proxy of host object ``object_id`` for the worker reading the message."""
    worker = getattr(_receiving, "worker", None)
    if worker is None:
        raise HostUnavailable("a host object arrived outside a worker's connection")
    return HostProxy(worker, object_id, type_name, methods, is_callable)


def describe_object(obj):
    """``(name, method names, callable)`` of a lent object, as its proxy shows them."""
    kind = type(obj)
    methods = frozenset(n for n in dir(kind) if not n.startswith("__") and callable(getattr(kind, n, None)))
    name = getattr(obj, "__qualname__", None)
    if not isinstance(name, str):
        name = "%s.%s" % (kind.__module__, kind.__qualname__)
    return name, methods, callable(obj)


class HostProxy:
    """A callable (or object) of the host, seen from the worker.

    Calling it runs the host's callable on the host and returns its result;
    its exceptions are raised here with the host's traceback as ``__cause__``.
    """

    __slots__ = ("_nb_worker", "_nb_id", "_nb_type", "_nb_methods", "_nb_callable", "__weakref__")

    def __init__(self, worker, object_id, type_name, methods, is_callable):
        worker.has_host_proxies = True
        object.__setattr__(self, "_nb_worker", worker)
        object.__setattr__(self, "_nb_id", object_id)
        object.__setattr__(self, "_nb_type", type_name)
        object.__setattr__(self, "_nb_methods", methods)
        object.__setattr__(self, "_nb_callable", is_callable)

    def __call__(self, *args, **kwargs):
        if not self._nb_callable:
            raise TypeError("the host's %s object is not callable" % self._nb_type)
        return self._nb_worker.call_host("call", self._nb_id, args, kwargs, self._describe())

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._nb_methods:
            return HostMethod(self, name)
        return self._nb_worker.call_host("getattr", (self._nb_id, name), (), {}, "%s.%s" % (self._describe(), name))

    def __reduce__(self):
        return host_object, (self._nb_id,)

    def _describe(self):
        return "host %s #%d" % (self._nb_type, self._nb_id)

    def __repr__(self):
        return "<%s>" % self._describe()

    def __del__(self):
        try:
            self._nb_worker.release_host_object(self._nb_id)
        except Exception:
            pass


class HostMethod:
    """A bound method of a host object, seen from the worker."""

    __slots__ = ("owner", "name")

    def __init__(self, owner, name):
        self.owner = owner
        self.name = name

    def __call__(self, *args, **kwargs):
        owner = self.owner
        return owner._nb_worker.call_host("method", (owner._nb_id, self.name), args, kwargs,
                                          "%s.%s" % (owner._describe(), self.name))

    def __reduce__(self):
        return getattr, (self.owner, self.name)

    def __repr__(self):
        return "<method %s of %r>" % (self.name, self.owner)
