"""Pickling of messages, with a version-neutral form for numpy objects; every protocol uses it.

numpy pickles its objects by module paths that change between versions (numpy 2
writes ``numpy._core...``, which numpy < 1.26 cannot import), and host and worker
often run different numpy versions.  So a message pickled here carries numpy
objects in a form built only from what every numpy since 1.16 shares, rebuilt
with the receiver's own numpy by functions of this module (both ends run it:
the host injects it into every environment):

- an ``ndarray`` (exactly that type) whose dtype holds no Python objects:
  ``_ndarray(buffer, dtype, shape[, order])`` where ``dtype`` is ``dtype.str``
  (``"<f4"``, ``"<M8[ns]"``, ``"|S5"``) or, for structured and sub-array dtypes,
  a tuple describing names, formats, offsets and item size.  C- and
  Fortran-ordered arrays send their memory as it is; other layouts send a
  C-ordered copy.  At pickle protocol 5 the buffer is an out-of-band
  ``PickleBuffer`` (no copy, shared-memory views where the protocol places
  them); below 5 (Python 3.7) it is the bytes, in band, and the receiver gets
  a writable copy, as with numpy's own pickling.
- a numpy scalar (``np.float32(1.5)``, ``np.datetime64(...)``, ``np.str_``):
  ``_scalar(dtype, bytes)``.
- a ``dtype``: ``_dtype(dtype)``.

Arrays of object dtype (or with object fields), dtypes carrying metadata,
ndarray subclasses (``np.matrix``, ``np.recarray``, masked arrays) and new
dtypes such as numpy 2's ``StringDType`` keep numpy's own reduction, which
crosses only between compatible numpy versions.

The numpy forms are per-pickler ``dispatch_table`` entries rather than a
``reducer_override``: the pickler consults the table only for objects that are
not of a built-in type, while ``reducer_override`` would be a Python call for
every tuple, list, str and dict of every message.
"""
import copyreg
import io
import pickle
import sys
import threading

PickleBuffer = getattr(pickle, "PickleBuffer", None)  # Python 3.8+

#: dtype kinds whose values are plain bytes: bool, integers, floats, complex, datetime, timedelta, bytes, str, void.
_NEUTRAL_KINDS = frozenset("biufcmMSUV")
#: Kinds numpy exports through the buffer protocol as they are (datetimes, for one, it refuses).
_BUFFER_KINDS = frozenset("biufc")
#: Entries each cache holds at most (it starts over when full).
_CACHE_MAX = 256
#: ``id(dtype) -> (dtype, description or None, buffer-exportable)``: describing a dtype costs more than pickling it.
_descriptions = {}
#: ``description -> dtype``: parsing a description costs more than building the array.
_dtypes = {}
_numpy = None


class EncodeError(Exception):
    """A message could not be pickled; nothing of it was sent, the channel stays usable.

    :attr:`error` is the exception pickling raised.
    """

    def __init__(self, error):
        super().__init__("%s: %s" % (type(error).__name__, error))
        self.error = error


class DecodeError(Exception):
    """A whole message arrived but could not be unpickled; the channel stays usable.

    :attr:`error` is the exception unpickling raised (a missing module or class,
    a failing ``__setstate__``); :attr:`culprit` is ``"module.name"`` of the
    class or function the pickle needed and this side could not import, or None.
    A frame that is not a valid message is a
    :class:`~nbcore.worker.framing.ProtocolError` instead.
    """

    def __init__(self, error, culprit=None):
        super().__init__("%s: %s" % (type(error).__name__, error))
        self.error = error
        self.culprit = culprit


# describing and resolving dtypes ------------------------------------------------------------------

def _describe(dtype):
    """The neutral description of ``dtype`` (a str or a tuple of plain values), or None when it has none."""
    if dtype.metadata is not None:
        return None
    if dtype.fields is not None:
        names, formats, offsets, titles = [], [], [], []
        for name in dtype.names:
            field = dtype.fields[name]
            described = _describe(field[0])
            if described is None:
                return None
            names.append(name)
            formats.append(described)
            offsets.append(field[1])
            titles.append(field[2] if len(field) > 2 else None)
        record = _numpy is not None and dtype.type is _numpy.record
        return ("struct", tuple(names), tuple(formats), tuple(offsets), dtype.itemsize,
                tuple(titles) if any(t is not None for t in titles) else None, bool(dtype.isalignedstruct), record)
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        described = _describe(base)
        return None if described is None else ("subarray", described, shape)
    if dtype.kind not in _NEUTRAL_KINDS or not dtype.itemsize:
        return None
    return dtype.str


def _known(dtype):
    """``(dtype, description or None, exportable as a buffer)``, remembered per dtype object."""
    known = _descriptions.get(id(dtype))
    if known is None or known[0] is not dtype:
        if len(_descriptions) >= _CACHE_MAX:
            _descriptions.clear()
        known = _descriptions[id(dtype)] = (dtype, _describe(dtype), dtype.kind in _BUFFER_KINDS)
    return known


def _resolve(description):
    """The receiver's dtype for a description made by :func:`_describe`."""
    dtype = _dtypes.get(description)
    if dtype is None:
        numpy = _numpy or _import_numpy()
        dtype = _build_dtype(numpy, description)
        if len(_dtypes) >= _CACHE_MAX:
            _dtypes.clear()
        _dtypes[description] = dtype
    return dtype


def _build_dtype(numpy, description):
    if isinstance(description, str):
        return numpy.dtype(description)
    if description[0] == "subarray":
        return numpy.dtype((_build_dtype(numpy, description[1]), description[2]))
    _, names, formats, offsets, itemsize, titles, aligned, record = description
    spec = {"names": list(names), "formats": [_build_dtype(numpy, f) for f in formats],
            "offsets": list(offsets), "itemsize": itemsize}
    if titles is not None:
        spec["titles"] = list(titles)
    dtype = numpy.dtype(spec, align=aligned)
    return numpy.dtype((numpy.record, dtype)) if record else dtype


def _import_numpy():
    global _numpy
    import numpy

    _numpy = numpy
    return numpy


# rebuilding (the receiver) -------------------------------------------------------------------------

def _ndarray(buffer, dtype, shape, order="C"):
    """Rebuild an array pickled by this module."""
    resolved = _resolve(dtype)
    if type(buffer) is bytes:  # in band (protocol < 5): a writable array, as numpy's own pickling gives
        buffer = bytearray(buffer)
    return _numpy.ndarray(shape, resolved, buffer, order=order)


def _scalar(dtype, data):
    """Rebuild a numpy scalar pickled by this module."""
    resolved = _resolve(dtype)  # first: it imports numpy when this process has not yet
    return _numpy.ndarray((), resolved, data)[()]


def _dtype(description):
    """Rebuild a dtype pickled by this module."""
    return _resolve(description)


# reducing (the sender) -----------------------------------------------------------------------------

def _byte_view(array):
    """``array``'s memory as a flat uint8 array (C-contiguous input): exportable whatever the dtype."""
    return array.reshape(-1).view(_numpy.uint8)


def _reduce_ndarray_oob(obj):
    """Protocol 5: the neutral form with the memory as an out-of-band buffer; numpy's own reduction otherwise."""
    _, description, exportable = _known(obj.dtype)
    if description is None:
        return obj.__reduce_ex__(5)
    flags = obj.flags
    if flags.c_contiguous:
        return _ndarray, (PickleBuffer(obj if exportable else _byte_view(obj)), description, obj.shape)
    if flags.f_contiguous:
        transposed = obj.T
        return _ndarray, (PickleBuffer(transposed if exportable else _byte_view(transposed)), description,
                          obj.shape, "F")
    copy = _numpy.ascontiguousarray(obj)
    return _ndarray, (PickleBuffer(copy if exportable else _byte_view(copy)), description, obj.shape)


def _reduce_ndarray_inband(obj):
    """Protocol < 5: the neutral form with the memory as bytes; numpy's own reduction otherwise."""
    description = _known(obj.dtype)[1]
    if description is None:
        return obj.__reduce__()
    if obj.flags.f_contiguous and not obj.flags.c_contiguous:
        return _ndarray, (obj.tobytes("F"), description, obj.shape, "F")
    return _ndarray, (obj.tobytes(), description, obj.shape)


def _reduce_scalar(obj):
    dtype = obj.dtype
    description = _known(dtype)[1]
    if description is None or type(obj) is not dtype.type:  # a subclass of a numpy scalar type: its own way
        return obj.__reduce__()
    return _scalar, (description, obj.tobytes())


def _reduce_dtype(obj):
    description = _known(obj)[1]
    if description is None:
        return obj.__reduce__()
    return _dtype, (description,)


class _Dispatch(dict):
    """A picklers' dispatch table: numpy's types get the neutral form once numpy is imported.

    A pickler with a table of its own does not consult ``copyreg``'s, so the
    types registered there (now or later) are looked up on a miss.
    """

    def __init__(self, reduce_ndarray):
        super().__init__()
        self._reduce_ndarray = reduce_ndarray

    def __missing__(self, cls):
        global _numpy
        numpy = sys.modules.get("numpy")
        if numpy is not None and getattr(numpy, "ndarray", None) is not None:
            _numpy = numpy
            if cls is numpy.ndarray:
                reducer = self[cls] = self._reduce_ndarray
                return reducer
            if issubclass(cls, numpy.generic):
                reducer = self[cls] = _reduce_scalar
                return reducer
            if issubclass(cls, numpy.dtype):
                reducer = self[cls] = _reduce_dtype
                return reducer
        return copyreg.dispatch_table[cls]


_dispatch_oob = _Dispatch(_reduce_ndarray_oob)
_dispatch_inband = _Dispatch(_reduce_ndarray_inband)


class _PicklerOutOfBand(pickle.Pickler):
    dispatch_table = _dispatch_oob


class _PicklerInBand(pickle.Pickler):
    dispatch_table = _dispatch_inband


def _pickler(file, protocol, buffer_callback):
    if protocol >= 5:
        return _PicklerOutOfBand(file, protocol, buffer_callback=buffer_callback)
    return _PicklerInBand(file, protocol)


class _Sink:
    __slots__ = ("write",)


class Pickling:
    """Pickles the messages of one channel at ``protocol`` with one reused pickler (creating one costs
    more than a small message).

    The pickler's memo is cleared after every message, so it keeps nothing alive.
    A call made while the pickler is busy (from another thread, or from inside a
    ``__reduce__`` that sends) gets a pickler of its own.
    """

    def __init__(self, protocol=5):
        self.protocol = protocol
        self._chunks = []
        self._buffers = []
        sink = _Sink()
        sink.write = self._chunks.append
        self._pickler = _pickler(sink, protocol, self._buffers.append)
        self._busy = threading.Lock()

    def dumps(self, message):
        """Return ``(pickle, out_of_band_buffers)`` of ``message`` (buffers only at protocol 5; an empty tuple
        when there are none)."""
        if not self._busy.acquire(False):
            buffers = []
            out = io.BytesIO()
            _pickler(out, self.protocol, buffers.append).dump(message)
            return out.getvalue(), buffers
        chunks = self._chunks
        try:
            self._pickler.dump(message)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            buffers = self._buffers
            if not buffers:
                return data, ()
            taken = buffers[:]
            buffers.clear()
            return data, taken
        finally:
            self._pickler.clear_memo()
            chunks.clear()
            self._buffers.clear()  # after a failed dump
            self._busy.release()


def dumps(obj, protocol=None):
    """``pickle.dumps(obj, protocol)`` with the neutral numpy forms, every buffer in band."""
    protocol = pickle.DEFAULT_PROTOCOL if protocol is None else protocol
    out = io.BytesIO()
    if protocol >= 5:
        _PicklerOutOfBand(out, protocol).dump(obj)
    else:
        _PicklerInBand(out, protocol).dump(obj)
    return out.getvalue()


def unpickle(data, buffers=()):
    """Unpickle a message; raise :class:`DecodeError` (naming the culprit) when that fails."""
    try:
        if buffers:
            return pickle.loads(data, buffers=buffers)
        return pickle.loads(data)
    except Exception as exc:
        raise DecodeError(exc, _culprit(data, buffers)) from exc


def _culprit(data, buffers):
    """``"module.name"`` of the first global the pickle needs that does not import here, or None.

    Only called after a failure: it reads the pickle again, recording the globals it looks up.
    """
    failed = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except Exception:
                failed.append("%s.%s" % (module, name))
                raise

    try:
        if buffers:
            Recorder(io.BytesIO(data), buffers=buffers).load()
        else:
            Recorder(io.BytesIO(data)).load()
    except Exception:
        pass
    return failed[0] if failed else None
