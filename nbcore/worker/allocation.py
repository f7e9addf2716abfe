"""Buffers for data about to cross the boundary, placed where the active channel sends them from.

With a protocol that supports it (``shm-pickle``), an array allocated here and
returned from a call crosses without a copy.  Elsewhere it is an ordinary
buffer.  Do not modify such an array after returning it: the host may read
it directly.
"""
import functools
import math
import operator

_channel = None
_numpy = None
#: ``dtype`` arguments already seen, and the dtype each one means (bounded).
_dtypes = {}
_DTYPES_MAX = 256
_prod = getattr(math, "prod", None) or (lambda values: functools.reduce(operator.mul, values, 1))  # 3.8+ / 3.7


def set_active_channel(channel):
    """Called by the RPC loop (host or worker side) with the channel in use."""
    global _channel
    _channel = channel


def allocate_buffer(nbytes, channel=None):
    """A writable buffer of ``nbytes`` bytes (no numpy needed)."""
    channel = channel or _channel
    if channel is not None:
        return channel.allocate(nbytes)
    from .framing import allocate

    return allocate(nbytes)


def allocate_ndarray(shape, dtype, channel=None):
    """An uninitialised numpy array of ``shape`` and ``dtype`` that crosses the boundary cheaply."""
    try:
        resolved = _dtypes.get(dtype)
    except TypeError:  # an unhashable spec, such as a list of fields
        resolved = None
    dtype = _resolve_dtype(dtype) if resolved is None else resolved
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = _prod(shape)
    if count < 0:
        raise ValueError("negative dimensions are not allowed")
    return _numpy.ndarray(shape, dtype, allocate_buffer(count * dtype.itemsize, channel))


def _resolve_dtype(spec):
    """``numpy.dtype(spec)``, remembered: parsing a dtype costs more than the rest of an allocation."""
    global _numpy
    if _numpy is None:
        try:
            import numpy
        except ImportError:
            raise ImportError("allocate_ndarray needs numpy, which this environment lacks; allocate_buffer(nbytes) "
                              "gives a bytes-like buffer without it") from None
        _numpy = numpy
    dtype = _numpy.dtype(spec)
    if len(_dtypes) >= _DTYPES_MAX:
        _dtypes.clear()
    try:
        _dtypes[spec] = dtype
    except TypeError:  # not remembered
        pass
    return dtype
