"""Message pickling: numpy objects in the version-neutral form, everything else as pickle.dumps does it."""
import copyreg
import io
import pickle
import pickletools

import pytest

from nbcore.worker import DecodeError, Pickling, unpickle
from nbcore.worker.pickling import dumps
from nbcore.worker.versions import cannot_rebuild, numpy_version

np = pytest.importorskip("numpy")

PROTOCOLS = [5, 4, 2]


def round_trip(message, protocol=5):
    data, buffers = Pickling(protocol).dumps(message)
    raws = [b.raw() for b in buffers]
    return data, len(buffers), unpickle(data, raws)


def globals_of(data):
    """The ``module name`` pairs a pickle imports when it is loaded."""
    out = io.StringIO()
    pickletools.dis(data, out)
    names, strings = set(), []
    for line in out.getvalue().splitlines():
        if "GLOBAL" in line and "STACK_GLOBAL" not in line:
            names.add(line.split(None, 2)[-1].strip("'"))
        elif "STACK_GLOBAL" in line:
            names.add(" ".join(strings[-2:]))
        elif "UNICODE" in line:
            strings.append(line.split(None, 2)[-1].strip("'"))
    return names


NEUTRAL = {
    "float32 Fortran": lambda: np.asfortranarray(np.arange(12, dtype="f4").reshape(3, 4)),
    "strided": lambda: np.arange(20.0)[::3],
    "transposed strided": lambda: np.arange(24).reshape(4, 6)[::2, 1::2].T,
    "0-d": lambda: np.array(2.5),
    "empty": lambda: np.zeros((0, 3), "i2"),
    "big-endian": lambda: np.arange(5, dtype=">i4"),
    "bool": lambda: np.array([True, False]),
    "complex": lambda: np.array([1 + 2j], "c8"),
    "structured": lambda: np.array([(1.5, (2, 3), b"ab")], dtype=[("x", "f4"), ("y", "i2", (2,)), ("s", "S3")]),
    "aligned struct": lambda: np.zeros(2, dtype=np.dtype([("a", "i1"), ("b", "f8")], align=True)),
    "titled struct": lambda: np.zeros(2, dtype=np.dtype({"names": ["a"], "formats": ["i4"], "titles": ["A"]})),
    "record dtype": lambda: np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]).view(np.ndarray),
    "datetime64": lambda: np.array(["2024-01-01", "NaT"], dtype="M8[D]"),
    "timedelta64": lambda: np.array([1, -2], dtype="m8[ms]"),
    "datetime field": lambda: np.zeros(3, dtype=[("t", "M8[ns]"), ("v", "f8")]),
    "bytes": lambda: np.array([b"ab", b"c"]),
    "str": lambda: np.array(["ab", "é"]),
    "void": lambda: np.zeros(2, "V4"),
    "sub-array of strings": lambda: np.zeros(2, dtype=[("s", "U2", (2,))]),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(NEUTRAL))
def test_arrays_cross_in_the_neutral_form(name, protocol):
    array = NEUTRAL[name]()
    data, n_buffers, back = round_trip(array, protocol)
    assert not any(g.startswith("numpy") for g in globals_of(data)), globals_of(data)
    assert n_buffers == (1 if protocol >= 5 else 0)
    assert type(back) is np.ndarray and back.dtype == array.dtype and back.shape == array.shape
    assert back.dtype.isalignedstruct == array.dtype.isalignedstruct and back.dtype.type is array.dtype.type
    assert back.flags.writeable
    assert back.tobytes() == array.tobytes()
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        assert back.flags.f_contiguous


@pytest.mark.parametrize("dtype", ["?", "i1", "u2", "<i4", ">i4", "i8", "f2", "<f4", ">f8", "c8", "c16"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (5,), (2, 3, 4)])
def test_plain_arrays_keep_dtype_shape_and_values(dtype, shape):
    array = (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape)
    data, n_buffers, back = round_trip(array)
    assert b"_ndarray" in data and n_buffers == 1
    assert type(back) is np.ndarray and back.dtype == array.dtype and back.shape == shape
    assert back.flags.writeable
    np.testing.assert_array_equal(back, array)


SCALARS = [np.float32(1.5), np.float64(2.5), np.int64(-7), np.uint8(200), np.bool_(True), np.complex64(1 + 2j),
           np.float16(0.5), np.datetime64("2020-01-01T00:00"), np.datetime64("NaT"), np.timedelta64(3, "s"),
           np.str_("héllo"), np.bytes_(b"ab"), np.zeros(1, dtype=[("a", "i4"), ("b", "f8")])[0]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("scalar", SCALARS, ids=lambda s: type(s).__name__)
def test_numpy_scalars_cross_in_the_neutral_form(scalar, protocol):
    data, _, back = round_trip(scalar, protocol)
    assert not any(g.startswith("numpy") for g in globals_of(data)), globals_of(data)
    assert type(back) is type(scalar) and back.dtype == scalar.dtype
    assert back.tobytes() == scalar.tobytes()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dtype", [np.dtype(">i4"), np.dtype("M8[us]"), np.dtype("U7"),
                                   np.dtype([("x", "<f8", (2, 2)), ("n", "S2")]),
                                   np.dtype([("a", "i1"), ("b", "f8")], align=True)], ids=str)
def test_dtypes_cross_in_the_neutral_form(dtype, protocol):
    data, _, back = round_trip(dtype, protocol)
    assert not any(g.startswith("numpy") for g in globals_of(data)), globals_of(data)
    assert back == dtype and back.isalignedstruct == dtype.isalignedstruct


def test_read_only_arrays_stay_read_only_out_of_band():
    array = np.arange(10.0)
    array.flags.writeable = False
    _, _, back = round_trip(array)
    assert not back.flags.writeable
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("make", [
    lambda: np.array([1, "a", None], dtype=object),
    lambda: np.zeros(2, dtype=[("o", object), ("x", "f4")]),
    lambda: np.zeros(3, dtype=np.dtype("f4", metadata={"unit": "m"})),
    lambda: np.ma.masked_array([1.0, 2.0], mask=[False, True]),
    lambda: np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
])
def test_object_arrays_and_subclasses_keep_numpys_own_reduction(make):
    array = make()
    data, _, back = round_trip(array)
    assert b"_ndarray" not in data
    assert type(back) is type(array) and back.dtype == array.dtype
    if array.dtype.metadata:
        assert back.dtype.metadata == array.dtype.metadata
    assert (back == array).all()


def test_the_in_band_form_needs_no_pickle_buffer():
    """Protocol 4 (a Python 3.7 worker): the bytes travel in band and the array comes back writable."""
    data, buffers = Pickling(4).dumps([np.arange(3.0), np.asfortranarray(np.ones((2, 2), "f4"))])
    assert not buffers and b"PickleBuffer" not in data
    back = pickle.loads(data)
    assert back[0].flags.writeable and back[1].flags.f_contiguous
    np.testing.assert_array_equal(back[0], np.arange(3.0))


def test_exceptions_carrying_arrays_pickle_in_the_neutral_form():
    data = dumps(ValueError("bad", np.arange(3)), 4)
    assert not any(g.startswith("numpy") for g in globals_of(data))
    np.testing.assert_array_equal(pickle.loads(data).args[1], np.arange(3))


class Registered:
    def __init__(self, value):
        self.value = value


def test_types_registered_with_copyreg_use_their_reducer():
    copyreg.pickle(Registered, lambda obj: (Registered, (obj.value * 10,)))
    try:
        _, _, back = round_trip([Registered(1), 1 + 2j, np.arange(3)])
    finally:
        del copyreg.dispatch_table[Registered]
    assert back[0].value == 10 and back[1] == 1 + 2j
    np.testing.assert_array_equal(back[2], np.arange(3))


def test_nested_messages_and_repeated_arrays():
    array = np.arange(6, dtype="i2").reshape(2, 3)
    message = (1, "call", {"a": [array, array], "b": (array[1], b"x" * 10)}, [])
    _, _, back = round_trip(message)
    a, b = back[2]["a"]
    assert a is b  # memoised within a message, as pickle.dumps does
    np.testing.assert_array_equal(a, array)
    np.testing.assert_array_equal(back[2]["b"][0], array[1])


class Thing:
    pass


def test_the_pickler_keeps_nothing_alive():
    import weakref

    thing = Thing()
    ref = weakref.ref(thing)
    p = Pickling()
    p.dumps([thing, np.arange(3)])
    del thing
    assert ref() is None


def test_a_failed_pickle_leaves_the_pickler_usable():
    p = Pickling()
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        p.dumps([np.arange(3), lambda: None])
    data, buffers = p.dumps(np.arange(4.0))
    assert len(buffers) == 1
    np.testing.assert_array_equal(pickle.loads(data, buffers=[b.raw() for b in buffers]), np.arange(4.0))


def test_re_entrant_pickling_gets_a_pickler_of_its_own():
    p = Pickling()

    class Inner:
        def __reduce__(self):
            data, buffers = p.dumps(np.arange(2.0))  # e.g. a __reduce__ that sends a message
            return (bytes, (bytes(data),))

    data, buffers = p.dumps([Inner(), np.arange(3.0)])
    back = pickle.loads(data, buffers=[b.raw() for b in buffers])
    assert isinstance(back[0], bytes)
    np.testing.assert_array_equal(back[1], np.arange(3.0))


def test_a_failed_unpickle_names_the_global_it_could_not_import():
    data = pickle.dumps(Thing()).replace(b"test_pickling", b"nb_gone_modul")
    with pytest.raises(DecodeError) as info:
        unpickle(data)
    assert isinstance(info.value.error, ModuleNotFoundError)
    assert "nb_gone_modul" in info.value.culprit and info.value.culprit.endswith(".Thing")


def test_the_failure_message_names_both_sides_and_versions():
    text = cannot_rebuild("the environment", {"python": "3.9.18", "numpy": "1.23.5"}, "an argument",
                          "the host", {"python": "3.12.1", "numpy": "2.1.3"},
                          ModuleNotFoundError("No module named 'numpy._core'"), "numpy._core.numeric._frombuffer")
    assert text.startswith("the environment (Python 3.9.18, numpy 1.23.5) cannot rebuild an argument of type "
                           "numpy._core.numeric._frombuffer from the host (Python 3.12.1, numpy 2.1.3): "
                           "No module named 'numpy._core'")
    assert "\n" not in text and "env.remote()" in text
    assert cannot_rebuild("the host", {"python": "3.12.1"}, "the result", "the environment", None,
                          KeyError("x")).endswith("from the environment (unknown versions): KeyError: 'x'")


def test_numpy_version_is_found_without_importing_numpy():
    assert numpy_version() == np.__version__


def test_numpy_version_lists_only_the_folder_that_holds_numpy(tmp_path, monkeypatch):
    """The worker's working directory comes first on its ``sys.path`` and may hold many files: the search for
    numpy's install record lists no folder without numpy."""
    import os
    import sys

    from nbcore.worker import versions

    project, site = tmp_path / "project", tmp_path / "site-packages"
    for name in ("data", "numpy-1.26.4.dist-info"):
        (project / name).mkdir(parents=True)  # a record without the package: not numpy's folder
    for name in ("numpy", "numpy-1.26.4.dist-info", "other"):
        (site / name).mkdir(parents=True)
    listed, listdir = [], os.listdir
    monkeypatch.setattr(versions.os, "listdir", lambda folder: listed.append(folder) or listdir(folder))
    monkeypatch.delitem(sys.modules, "numpy")
    monkeypatch.setattr(sys, "path", [str(project), str(tmp_path / "missing"), str(site)])
    assert numpy_version() == "1.26.4"
    assert listed == [str(site)]
    monkeypatch.setattr(sys, "path", [str(project)])
    assert numpy_version() is None


@pytest.mark.parametrize("value", ["np.float32(2.5)", "np.arange(3)", "np.dtype('f4')"])
def test_a_process_that_has_not_imported_numpy_rebuilds_numpy_objects(value):
    """The receiver imports numpy on the first numpy object (the CLI host never imports it itself)."""
    import subprocess
    import sys

    code = ("import pickle, sys, numpy as np\n"
            "from nbcore.worker import Pickling\n"
            "data, buffers = Pickling(4).dumps(%s)\n"
            "sys.stdout.buffer.write(data)" % value)
    data = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    check = ("import sys\nfrom nbcore.worker import unpickle\nassert 'numpy' not in sys.modules\n"
             "print(repr(unpickle(sys.stdin.buffer.read())))")
    out = subprocess.run([sys.executable, "-c", check], input=data, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
