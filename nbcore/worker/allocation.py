"""Buffers for data about to cross the boundary, placed where the active channel sends them from.

With a protocol that supports it (``shm-pickle``), an array allocated here and
returned from a call crosses without a copy.  Elsewhere it is an ordinary
buffer.  Do not modify such an array after returning it: the host may read
it directly.
"""
_channel = None
_numpy = None


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
    np = _numpy or _import_numpy()
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = _prod(shape)
    if count < 0:
        raise ValueError("negative dimensions are not allowed")
    return np.ndarray(shape, dtype, allocate_buffer(count * dtype.itemsize, channel))


def _import_numpy():
    global _numpy
    import numpy

    _numpy = numpy
    return numpy


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out
