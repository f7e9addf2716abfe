"""Functions ``nbcore bench`` calls in the worker (stdlib only; numpy when the environment has it)."""
from .allocation import allocate_ndarray

FRAME_SHAPES = ((1080, 1920, 3), (1080, 1920, 1))
_frame = None
_blob = None


def noop():
    """Do nothing: measures the round trip."""


def has_numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def frame():
    """A 33.2 MB frame (float32 RGB + depth), made once and returned on every call."""
    global _frame
    if _frame is None:
        if has_numpy():
            import numpy as np

            _frame = [np.random.default_rng(0).random(shape, dtype=np.float32) for shape in FRAME_SHAPES]
        else:
            _frame = [bytearray(4 * a * b * c) for a, b, c in FRAME_SHAPES]
    return _frame


def allocated_frame():
    """The same frame built with ``allocate_ndarray`` each call (crosses without a copy where supported)."""
    out = []
    for shape in FRAME_SHAPES:
        array = allocate_ndarray(shape, "float32")
        array[0, 0, 0] = 1.0
        out.append(array)
    return out


def blob(nbytes):
    """A buffer of ``nbytes`` bytes that crosses out of band (numpy array, else PickleBuffer), kept per size."""
    global _blob
    if _blob is None or _blob[0] != nbytes:
        _blob = (nbytes, make_blob(nbytes))
    return _blob[1]


def make_blob(nbytes, use_numpy=None):
    """A fresh ``nbytes`` buffer of ones (the host makes the same kind as the worker's)."""
    if has_numpy() if use_numpy is None else use_numpy:
        import numpy as np

        return np.ones(nbytes, dtype=np.uint8)
    import pickle

    data = bytearray(b"\1" * nbytes)
    return pickle.PickleBuffer(data) if hasattr(pickle, "PickleBuffer") else data


def consume(frame):
    """Receive a frame from the host; return its size in bytes."""
    return sum(memoryview(part).nbytes for part in frame)
