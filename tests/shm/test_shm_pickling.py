"""The message pickler: plain arrays in the short form, everything else as pickle.dumps does it."""
import copyreg
import pickle

import pytest

from nb_shm.worker import pickling

np = pytest.importorskip("numpy")


def round_trip(message):
    data, buffers = pickling.Pickling().dumps(message)
    raws = [b.raw() for b in buffers]
    return data, len(buffers), pickle.loads(data, buffers=raws)


@pytest.mark.parametrize("dtype", ["?", "i1", "u2", "<i4", ">i4", "i8", "f2", "<f4", ">f8", "c8", "c16"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (5,), (2, 3, 4)])
def test_plain_arrays_keep_dtype_shape_and_values(dtype, shape):
    array = (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape)
    data, n_buffers, back = round_trip(array)
    assert b"_ndarray" in data and n_buffers == 1
    assert type(back) is np.ndarray and back.dtype == array.dtype and back.shape == shape
    assert back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_read_only_arrays_stay_read_only():
    array = np.arange(10.0)
    array.flags.writeable = False
    _, _, back = round_trip(array)
    assert not back.flags.writeable
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    lambda: np.arange(20.0)[::2],
    lambda: np.array([1, "a", None], dtype=object),
    lambda: np.zeros(3, dtype=[("x", "f4"), ("y", "i2")]),
    lambda: np.zeros(3, dtype=np.dtype("f4", metadata={"unit": "m"})),
    lambda: np.array(["ab", "c"]),
    lambda: np.array(["2024-01-01"], dtype="M8[D]"),
    lambda: np.ma.masked_array([1.0, 2.0], mask=[False, True]),
])
def test_other_arrays_are_pickled_as_numpy_does(make):
    array = make()
    data, _, back = round_trip(array)
    assert b"_ndarray" not in data
    assert type(back) is type(array) and back.dtype == array.dtype
    if array.dtype.metadata:
        assert back.dtype.metadata == array.dtype.metadata
    assert (back == array).all()


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
    p = pickling.Pickling()
    p.dumps([thing, np.arange(3)])
    del thing
    assert ref() is None


def test_a_failed_pickle_leaves_the_pickler_usable():
    p = pickling.Pickling()
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        p.dumps([np.arange(3), lambda: None])
    data, buffers = p.dumps(np.arange(4.0))
    assert len(buffers) == 1
    np.testing.assert_array_equal(pickle.loads(data, buffers=[b.raw() for b in buffers]), np.arange(4.0))


def test_re_entrant_pickling_gets_a_pickler_of_its_own():
    p = pickling.Pickling()

    class Inner:
        def __reduce__(self):
            data, buffers = p.dumps(np.arange(2.0))  # e.g. a __reduce__ that sends a message
            return (bytes, (bytes(data),))

    data, buffers = p.dumps([Inner(), np.arange(3.0)])
    back = pickle.loads(data, buffers=[b.raw() for b in buffers])
    assert isinstance(back[0], bytes)
    np.testing.assert_array_equal(back[1], np.arange(3.0))
