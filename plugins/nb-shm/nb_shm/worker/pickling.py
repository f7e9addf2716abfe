"""Pickling for shm-pickle messages: protocol 5 with a shorter form for plain numpy arrays.

numpy pickles an array as ``_frombuffer(buffer, dtype, shape, order)``, the
dtype as an object rebuilt from its state: about 5 us to pickle and 3 us to
unpickle per message, a large share of a zero-copy call.  Here a C-contiguous
``ndarray`` of a plain numeric dtype (booleans, integers, floats, complex; no
metadata, so ``dtype.str`` says it all) is pickled as ``_ndarray(buffer,
dtype.str, shape)``: the same out-of-band buffer, the same array on the other
side (dtype, shape, writability).  Every other object, ``ndarray`` subclasses
included, is pickled as ``pickle.dumps`` would.  Both ends run this module (the
host injects it), so the receiver always knows the short form.

The short form is a per-pickler ``dispatch_table`` entry for ``ndarray``
rather than a ``reducer_override``: the pickler consults the table only for
objects that are not of a built-in type, while ``reducer_override`` would be a
Python call for every tuple, list, str and dict of every message.
"""
import copyreg
import io
import pickle
import sys

_ndarray_type = None
#: ``id(dtype) -> (dtype, short name or None)``: a dtype's ``str`` is formatted anew on every access.
_short_names = {}
#: ``short name -> dtype``: parsing the name costs more than building the array.
_dtypes = {}
#: Entries each cache holds at most (it starts over when full).
_CACHE_MAX = 256


def _ndarray(buffer, dtype, shape):
    """Rebuild an array pickled by :func:`_reduce_ndarray`."""
    resolved = _dtypes.get(dtype)
    if resolved is None:
        _find_ndarray(True)
        if len(_dtypes) >= _CACHE_MAX:
            _dtypes.clear()
        resolved = _dtypes[dtype] = sys.modules["numpy"].dtype(dtype)
    return _ndarray_type(shape, resolved, buffer)


def _reduce_ndarray(obj):
    """The short form for a plain C-contiguous array, numpy's own reduction otherwise."""
    dtype = obj.dtype
    known = _short_names.get(id(dtype))
    if known is None or known[0] is not dtype:
        known = _remember(dtype)
    if known[1] is not None and obj.flags.c_contiguous:
        return _ndarray, (pickle.PickleBuffer(obj), known[1], obj.shape)
    return obj.__reduce_ex__(5)


def _remember(dtype):
    """Record whether ``dtype`` has a short form (a plain numeric dtype, no metadata) and which."""
    if len(_short_names) >= _CACHE_MAX:
        _short_names.clear()
    plain = dtype.kind in "biufc" and dtype.metadata is None
    known = _short_names[id(dtype)] = (dtype, dtype.str if plain else None)
    return known


class _Dispatch(dict):
    """The picklers' dispatch table: ``{ndarray: _reduce_ndarray}`` once numpy is imported.

    A pickler with a table of its own does not consult ``copyreg``'s, so the
    types registered there (now or later) are looked up on a miss.
    """

    def __missing__(self, cls):
        return copyreg.dispatch_table[cls]


_dispatch = _Dispatch()


def _find_ndarray(load=False):
    """numpy's ndarray once numpy is imported (or imported here when ``load``), else None."""
    global _ndarray_type
    numpy = sys.modules.get("numpy")
    if numpy is None and load:
        import numpy
    if numpy is not None:
        _ndarray_type = getattr(numpy, "ndarray", None)
        if _ndarray_type is not None:
            _dispatch[_ndarray_type] = _reduce_ndarray
    return _ndarray_type


class _Pickler(pickle.Pickler):
    dispatch_table = _dispatch


class _Sink:
    __slots__ = ("write",)


class Pickling:
    """Pickles the messages of one channel with one reused pickler (creating one costs more than a small message).

    The pickler's memo is cleared after every message, so it keeps nothing alive.
    """

    def __init__(self):
        self._chunks = []
        self._buffers = []
        sink = _Sink()
        sink.write = self._chunks.append
        self._pickler = _Pickler(sink, 5, buffer_callback=self._buffers.append)
        self._busy = False

    def dumps(self, message):
        """Return ``(pickle, out_of_band_buffers)`` of ``message`` (protocol 5)."""
        if _ndarray_type is None:
            _find_ndarray()
        if self._busy:  # re-entered from inside a pickling (a __reduce__ that sends): a pickler of its own
            buffers = []
            out = io.BytesIO()
            _Pickler(out, 5, buffer_callback=buffers.append).dump(message)
            return out.getvalue(), buffers
        self._busy = True
        chunks, buffers = self._chunks, self._buffers
        try:
            self._pickler.dump(message)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return data, buffers[:]
        finally:
            self._pickler.clear_memo()
            chunks.clear()
            buffers.clear()
            self._busy = False
