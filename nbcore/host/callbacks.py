"""Lending host callables to a worker: which arguments become callbacks, and how they are pickled.

Functions, lambdas, bound methods, builtins and ``functools.partial`` objects
found in a request's arguments (also inside lists, tuples, sets and dict
values, at any depth) are replaced by :class:`Lent` markers; the worker
unpickles each as a :class:`~nbcore.worker.callbacks.HostProxy`.  Classes are
not lent (they pickle by name and are constructed in the worker), nor are
other callable objects (they pickle by value as before); pass
``obj.__call__`` to have such an object called back instead.
"""
import functools
import types

from ..worker import callbacks

#: Types whose instances are lent rather than pickled.
CALLABLE_TYPES = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.MethodWrapperType,
                  types.WrapperDescriptorType, types.MethodDescriptorType, functools.partial)
_CONTAINERS = (list, tuple, set, frozenset, dict)
#: Nesting deeper than this is not searched (such arguments pickle as they are).
MAX_DEPTH = 50


class Lent:
    """Pickles as the worker-side proxy of a lent host object."""

    __slots__ = ("object_id", "description")

    def __init__(self, object_id, description):
        self.object_id = object_id
        self.description = description

    def __reduce__(self):
        return callbacks.host_proxy, (self.object_id,) + self.description


def lend(obj, lent_ids):
    """Lend ``obj`` (its id is added to ``lent_ids``) and return the marker that pickles as its proxy."""
    object_id = callbacks.lend(obj)
    lent_ids.append(object_id)
    return Lent(object_id, callbacks.describe_object(obj))


def _holds_callable(value, depth):
    if isinstance(value, CALLABLE_TYPES):
        return True
    kind = type(value)
    if kind not in _CONTAINERS or depth > MAX_DEPTH:
        return False
    items = value.values() if kind is dict else value
    return any(_holds_callable(item, depth + 1) for item in items)


def _replace(value, lent_ids, memo, depth):
    if isinstance(value, CALLABLE_TYPES):
        marker = memo.get(id(value))
        if marker is None:
            marker = memo[id(value)] = lend(value, lent_ids)
        return marker
    kind = type(value)
    if kind not in _CONTAINERS or depth > MAX_DEPTH or not _holds_callable(value, depth):
        return value
    if kind is dict:
        return {key: _replace(item, lent_ids, memo, depth + 1) for key, item in value.items()}
    return kind(_replace(item, lent_ids, memo, depth + 1) for item in value)


def lend_callables(args, kwargs, lent_ids):
    """``(args, kwargs)`` with every host callable in them replaced by a :class:`Lent` marker.

    Unchanged (the same objects) when they hold none; the ids lent are appended to ``lent_ids``.
    """
    if not (_holds_callable(args, 0) or (kwargs and _holds_callable(kwargs, 0))):
        return args, kwargs
    memo = {}
    return _replace(args, lent_ids, memo, 0), _replace(kwargs, lent_ids, memo, 0)


def lend_result(value, lent_ids):
    """A callback's result with host callables in it lent (a returned function becomes a proxy too)."""
    if not _holds_callable(value, 0):
        return value
    return _replace(value, lent_ids, {}, 0)
