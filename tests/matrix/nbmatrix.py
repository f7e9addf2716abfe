"""What every pair of the version matrix exchanges; imported by the host script and by the worker.

Runs on Python 3.7+ with any numpy since 1.16, or none.  ``describe`` turns an object into plain
values (the same on every numpy version), so each side can check what the other received.
"""
import hashlib
import sys

try:
    import numpy as np
except ImportError:
    np = None


def versions():
    return {"python": "%d.%d.%d" % sys.version_info[:3], "numpy": np.__version__ if np is not None else None}


def objects():
    """Name -> object: arrays of every layout and non-object dtype, numpy scalars and dtypes."""
    aligned = np.dtype([("a", "i1"), ("b", "f8")], align=True)
    padded = np.zeros(2, dtype=aligned)  # zeros: the padding bytes are part of what is compared
    padded["a"], padded["b"] = 1, 2.5
    return {
        "float32 Fortran": np.asfortranarray(np.arange(12, dtype="f4").reshape(4, 3)),
        "strided": np.arange(20.0)[::3],
        "transposed strided": np.arange(24, dtype="i8").reshape(4, 6)[::2, 1::2].T,
        "0-d": np.array(2.5),
        "empty": np.zeros((0, 3), "i2"),
        "bool": np.array([True, False, True]),
        "complex64": np.array([1 + 2j, -3j], "c8"),
        "big-endian": np.arange(5, dtype=">i4"),
        "structured": np.array([(1.5, 2, b"ab", (0.5, 1.5))],
                               dtype=[("x", "f8"), ("y", "i4"), ("s", "S3"), ("v", "<f4", (2,))]),
        "aligned struct": padded,
        "record dtype": np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]).view(np.ndarray),
        "datetime64": np.array(["2024-01-01T12:00", "NaT"], dtype="M8[ns]"),
        "timedelta64": np.array([1, -2], dtype="m8[ms]"),
        "bytes": np.array([b"ab", b"c"], dtype="S3"),
        "str": np.array(["ab", "\u00e9"], dtype="U4"),
        "float32 scalar": np.float32(1.5),
        "float64 scalar": np.float64(-2.25),
        "int64 scalar": np.int64(-7),
        "uint8 scalar": np.uint8(200),
        "bool scalar": np.bool_(True),
        "complex scalar": np.complex128(1 - 1j),
        "datetime64 scalar": np.datetime64("2020-01-01T00:00"),
        "timedelta64 scalar": np.timedelta64(5, "s"),
        "str scalar": np.str_("h\u00e9llo"),
        "bytes scalar": np.bytes_(b"ab"),
        "struct scalar": padded[1],
        "dtype big-endian": np.dtype(">i4"),
        "dtype structured": np.dtype([("x", "<f8", (2, 2)), ("n", "S2")]),
        "dtype datetime": np.dtype("M8[us]"),
        "dtype aligned": aligned,
    }


def _dtype(dtype):
    return [dtype.str, str(dtype.descr), dtype.itemsize, bool(dtype.isalignedstruct), dtype.type is np.record]


def _digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def describe(obj):
    """Plain values that say what ``obj`` is, the same on every numpy version."""
    if np is not None:
        if isinstance(obj, np.ndarray):
            return ["ndarray", type(obj) is np.ndarray, _dtype(obj.dtype), list(obj.shape),
                    bool(obj.flags.f_contiguous and not obj.flags.c_contiguous), _digest(obj.tobytes())]
        if isinstance(obj, np.generic):
            return ["scalar", type(obj) is obj.dtype.type, _dtype(obj.dtype), _digest(obj.tobytes())]
        if isinstance(obj, np.dtype):
            return ["dtype", _dtype(obj)]
    return ["other", type(obj).__module__ + "." + type(obj).__name__, repr(obj)]


def describe_all(objs):
    return {name: describe(obj) for name, obj in objs.items()}


def echo(value):
    return value


def take_and_return(arr, rec):
    """The acceptance call: a float32 Fortran-ordered array and a structured array in, numpy values out."""
    assert arr.dtype == np.float32 and arr.flags.f_contiguous and not arr.flags.c_contiguous, (arr.dtype, arr.flags)
    assert rec.dtype.names == ("x", "y") and rec.dtype["x"] == np.float64
    return (arr.sum(), np.float32(2.5), arr[::2])


def acceptance():
    """``nbcore call`` needs no arguments: build the acceptance call's inputs here and return its result."""
    arr = np.asfortranarray(np.arange(12, dtype="f4").reshape(4, 3))
    rec = np.array([(1.0, 2), (3.0, 4)], dtype=[("x", "f8"), ("y", "i4")])
    return take_and_return(arr, rec)


def frames(n):
    """A generator of arrays."""
    for i in range(n):
        yield np.asfortranarray(np.full((2, 3), i, "f4"))


def plain_frames(n):
    for i in range(n):
        yield bytes([i]) * 3


def fail_with_array():
    raise ValueError("bad values", np.arange(3, dtype="f4"))


def array_count():
    return 3


class Scaler:
    """Kept in the worker; the host holds a proxy."""

    def __init__(self, factor):
        self.factor = factor

    def scale(self, values):
        return values * self.factor

    def tag(self):
        return "scaler %s" % self.factor


def one_array():
    return np.arange(4, dtype="i2")


def numpy_version():
    return versions()["numpy"]
