"""Functions ``nbcore bench`` calls in the worker (stdlib only; numpy when both ends have it).

Frames and blobs are numpy arrays when :func:`use_numpy` found numpy in the
environment and the host has it too, else :class:`pickle.PickleBuffer` objects
of the same sizes: either way they cross out of band, as arrays do.
"""
import pickle

from . import allocation
from .allocation import allocate_buffer, allocate_ndarray
from .run_ahead import run_ahead

FRAME_SHAPES = ((1080, 1920, 3), (1080, 1920, 1))
#: The render loop's frame: float32 RGB at 1080p (24.9 MB).
RENDER_SHAPE = (1080, 1920, 3)
#: Bytes per element of the frame (float32).
ITEMSIZE = 4
_numpy = None
_frame = None
_blob = None
_scene = None


def noop():
    """Do nothing: measures the round trip."""


def has_numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def use_numpy(host_has_numpy):
    """Make frames and blobs numpy arrays from now on if this environment has numpy too; return whether it does."""
    global _numpy, _frame, _blob, _scene
    _numpy = host_has_numpy and has_numpy()
    _frame = _blob = _scene = None
    return _numpy


def frame_nbytes():
    """The sizes in bytes of the frame's parts."""
    return [ITEMSIZE * a * b * c for a, b, c in FRAME_SHAPES]


def frame():
    """A 33.2 MB frame (float32 RGB + depth), made once and returned on every call."""
    global _frame
    if _frame is None:
        if _numpy:
            import numpy as np

            _frame = [np.random.default_rng(0).random(shape, dtype=np.float32) for shape in FRAME_SHAPES]
        else:
            _frame = [make_blob(nbytes, False) for nbytes in frame_nbytes()]
    return _frame


def allocated_frame():
    """The same frame built each call where the channel sends it from (``allocate_ndarray``, else ``allocate_buffer``)."""
    if _numpy:
        out = [allocate_ndarray(shape, "float32") for shape in FRAME_SHAPES]
        for array in out:
            array[0, 0, 0] = 1.0
        return out
    out = [allocate_buffer(nbytes) for nbytes in frame_nbytes()]
    for buffer in out:
        buffer[0] = 1
    return [pickle.PickleBuffer(buffer) for buffer in out]


def blob(nbytes):
    """A buffer of ``nbytes`` bytes that crosses out of band, kept per size."""
    global _blob
    if _blob is None or _blob[0] != nbytes:
        _blob = (nbytes, make_blob(nbytes, _numpy))
    return _blob[1]


def make_blob(nbytes, use_numpy):
    """A fresh ``nbytes`` buffer of ones: a numpy array, else a PickleBuffer (the host makes the same kind)."""
    if use_numpy:
        import numpy as np

        return np.ones(nbytes, dtype=np.uint8)
    return pickle.PickleBuffer(bytearray(b"\1" * nbytes))


def render_loop(count, allocated, ahead=0):
    """A generator "rendering" ``count`` frames: each is computed from a fixed scene (a few passes over
    the pixels, like a cheap shader), into a fresh array or, with ``allocated``, into one from
    ``allocate_ndarray`` (``allocate_buffer`` without numpy); with ``ahead``, run that many frames ahead."""
    frames = _render(count, allocated)
    return run_ahead(frames, ahead) if ahead else frames


def in_process(frames):
    """Run the generator ``frames`` as a program without nbcore would: ``allocate_ndarray`` gives ordinary memory."""
    channel = allocation._channel
    allocation.set_active_channel(None)
    try:
        yield from frames
    finally:
        allocation.set_active_channel(channel)


def render_into(count, buffers):
    """The render loop's frames made in ``buffers`` in turn (writable buffers of a frame's size), as
    ``allocate_ndarray`` makes them in the segments shm-pickle sends from."""
    return _render(count, True, buffers)


def _render(count, allocated, buffers=None):
    nbytes = ITEMSIZE * RENDER_SHAPE[0] * RENDER_SHAPE[1] * RENDER_SHAPE[2]
    global _scene
    if _numpy:
        import numpy as np

        if _scene is None:
            _scene = np.random.default_rng(1).random(RENDER_SHAPE, dtype=np.float32)
        scene = _scene
        for index in range(count):
            if buffers:
                out = np.frombuffer(buffers[index % len(buffers)], np.float32, nbytes // ITEMSIZE).reshape(RENDER_SHAPE)
            elif allocated:
                out = allocate_ndarray(RENDER_SHAPE, "float32")
            else:
                out = np.empty(RENDER_SHAPE, np.float32)
            np.multiply(scene, 0.5 + index / (2.0 * count), out=out)
            np.sqrt(out, out=out)
            yield out
        return
    scene = bytes(range(256)) * (nbytes // 256)
    for index in range(count):
        if buffers:
            out = memoryview(buffers[index % len(buffers)])[:nbytes]
        else:
            out = allocate_buffer(nbytes) if allocated else bytearray(nbytes)
        out[:] = scene
        out[0] = index & 255
        yield pickle.PickleBuffer(out)


def consume(frame):
    """Receive a frame from the host; return its size in bytes."""
    return sum(memoryview(part).nbytes for part in frame)
