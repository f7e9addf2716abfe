"""What crosses shm-pickle arrives intact, at every size boundary, and stays intact while the host keeps it."""
import collections
import mmap
import os
import pickle

import numpy as np
import pytest

from nb_shm import copying
from nb_shm.worker.channel import INLINE_MAX, PagesReader

from conftest import pattern

SEGMENT = 1 << 20
ALIGN = 4096


@pytest.fixture(scope="module")
def env(open_env):
    with open_env("venv", NBCORE_SHM_SEGMENT_SIZE=SEGMENT) as env:
        assert env.protocol.startswith("shm-pickle")
        yield env


SIZES = sorted({0, 1, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, ALIGN * 17 + 1,
                SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5})


@pytest.mark.parametrize("nbytes", SIZES)
def test_worker_to_host(env, nbytes):
    got = env.call("shm_targets:make", nbytes, 3)
    assert got.dtype == np.uint8 and got.shape == (nbytes,)
    np.testing.assert_array_equal(got, pattern(nbytes, 3))
    assert got.flags.writeable
    got[:1] = 0  # a received array is the host's to modify


@pytest.mark.parametrize("nbytes", SIZES)
def test_host_to_worker_and_back(env, nbytes):
    sent = pattern(nbytes, 5)
    back = env.call("shm_targets:echo", sent)
    np.testing.assert_array_equal(back, sent)
    assert env.call("shm_targets:total", sent) == int(sent.astype(np.uint64).sum())


@pytest.mark.parametrize("nbytes", [INLINE_MAX, SEGMENT + 1])
def test_a_read_only_array_crosses_too(env, nbytes):
    """Writable buffers are copied into shared memory by address (the GIL released), read-only ones otherwise."""
    sent = pattern(nbytes, 6)
    sent.flags.writeable = False
    np.testing.assert_array_equal(env.call("shm_targets:echo", sent), sent)


@pytest.mark.parametrize("nbytes", [INLINE_MAX, SEGMENT - 1, SEGMENT + 1])
def test_worker_allocate_ndarray(env, nbytes):
    got = env.call("shm_targets:prealloc", nbytes, 9)
    np.testing.assert_array_equal(got, pattern(nbytes, 9))


def test_worker_allocate_buffer_without_numpy(env):
    got = env.call("shm_targets:prealloc_buffer", 2 * INLINE_MAX)
    assert bytes(got) == b"\x07" * (2 * INLINE_MAX)


def test_host_allocate_ndarray(env):
    array = env.allocate_ndarray((300, 400), np.float64)
    array[:] = np.arange(array.size, dtype=np.float64).reshape(array.shape)
    assert env.call("shm_targets:total", array) == int(np.arange(array.size).sum())
    np.testing.assert_array_equal(env.call("shm_targets:echo", array), array)


def test_many_buffers_in_one_message(env):
    arrays = [pattern(INLINE_MAX + i * 1000, i) for i in range(300)] + [pattern(100, i) for i in range(300)]
    back = env.call("shm_targets:echo", arrays)
    assert len(back) == len(arrays)
    for a, b in zip(arrays, back):
        np.testing.assert_array_equal(a, b)


def test_nested_structures(env):
    value = {
        "frames": [pattern(200_000, 1), (pattern(10, 2), {"deep": [pattern(SEGMENT + 3, 3)]})],
        "text": "x" * 100_000,
        "blob": b"\x01" * 300_000,
        "mutable": bytearray(b"\x02" * 70_000),
        "scalars": (1, 2.5, None, True),
    }
    back = env.call("shm_targets:echo", value)
    np.testing.assert_array_equal(back["frames"][0], value["frames"][0])
    np.testing.assert_array_equal(back["frames"][1][0], value["frames"][1][0])
    np.testing.assert_array_equal(back["frames"][1][1]["deep"][0], value["frames"][1][1]["deep"][0])
    assert back["text"] == value["text"] and back["blob"] == value["blob"] and back["mutable"] == value["mutable"]
    assert env.call("shm_targets:total", pickle.PickleBuffer(bytearray(b"\x03" * 90_000))) == 3 * 90_000
    assert back["scalars"] == value["scalars"]


def test_non_contiguous_and_fortran_arrays(env):
    base = np.arange(600 * 500, dtype=np.float32).reshape(600, 500)
    for array in (base[::2, ::3], base.T, np.asfortranarray(base), base[:, 7], base[::-1]):
        back = env.call("shm_targets:echo", array)
        np.testing.assert_array_equal(back, array)


def test_object_and_structured_arrays(env):
    objects = np.array([{"a": 1}, "text", 3.5, None] * 30_000, dtype=object)
    back = env.call("shm_targets:echo", objects)
    assert back.dtype == object and list(back[:4]) == [{"a": 1}, "text", 3.5, None] and len(back) == len(objects)
    records = np.zeros(50_000, dtype=[("x", "<f8"), ("n", "<i4"), ("tag", "S3")])
    records["x"] = np.arange(50_000)
    records["tag"] = b"abc"
    np.testing.assert_array_equal(env.call("shm_targets:echo", records), records)


def test_received_arrays_survive_later_calls(env):
    kept = [env.call("shm_targets:make", 3 * INLINE_MAX, seed) for seed in range(20)]
    kept += [env.call("shm_targets:prealloc", 2 * INLINE_MAX, seed) for seed in range(20, 40)]
    for i in range(1000):
        other = env.call("shm_targets:make", 3 * INLINE_MAX if i % 2 else 2 * INLINE_MAX, 100 + i % 7)
        assert other[0] == pattern(1, 100 + i % 7)[0]
    for seed, array in enumerate(kept[:20]):
        np.testing.assert_array_equal(array, pattern(3 * INLINE_MAX, seed))
    for seed, array in enumerate(kept[20:], start=20):
        np.testing.assert_array_equal(array, pattern(2 * INLINE_MAX, seed))


def test_regions_are_reused_once_released(env):
    for _ in range(5):
        env.call("shm_targets:make", SEGMENT // 2, 1)
    before = env.call("shm_targets:stats")
    for _ in range(50):
        env.call("shm_targets:make", SEGMENT // 2, 1)
        env.call("shm_targets:prealloc", SEGMENT // 2, 1)
    after = env.call("shm_targets:stats")
    assert after["mapped"] == before["mapped"]
    assert after["regions"] <= 2


def test_segment_full_falls_back_to_copies(open_env):
    limit = 4 * SEGMENT
    with open_env("venv", NBCORE_SHM_SEGMENT_SIZE=SEGMENT, NBCORE_SHM_LIMIT=limit) as env:
        kept = [env.call("shm_targets:make", SEGMENT // 2 + 1, seed) for seed in range(40)]
        kept += [env.call("shm_targets:prealloc", SEGMENT // 2 + 1, seed) for seed in range(40, 60)]
        stats = env.call("shm_targets:stats")
        assert stats["mapped"] <= limit
        for seed, array in enumerate(kept):
            np.testing.assert_array_equal(array, pattern(SEGMENT // 2 + 1, seed))
        # A message larger than the whole limit still goes through.
        big = env.call("shm_targets:make", 2 * limit, 7)
        np.testing.assert_array_equal(big, pattern(2 * limit, 7))
        del kept, big
        env.call("shm_targets:stats")
        assert env.call("shm_targets:stats")["regions"] == 0


def test_copy_mode_for_the_whole_environment(open_env):
    with open_env("venv", NBCORE_SHM_COPY=1) as env:
        kept = [env.call("shm_targets:make", SEGMENT, seed) for seed in range(3)]
        assert env.call("shm_targets:stats")["regions"] == 0  # released at once, not held by the host
        for seed, array in enumerate(kept):
            np.testing.assert_array_equal(array, pattern(SEGMENT, seed))


def test_copy_mode_per_call(env):
    with copying(env):
        kept = env.call("shm_targets:make", SEGMENT, 1)
        assert env.call("shm_targets:stats")["regions"] == 0
    view = env.call("shm_targets:make", SEGMENT, 2)
    assert env.call("shm_targets:stats")["regions"] == 1
    np.testing.assert_array_equal(kept, pattern(SEGMENT, 1))
    np.testing.assert_array_equal(view, pattern(SEGMENT, 2))


def test_spin_setting_reaches_both_sides(open_env):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for spin_us in (0, 50):
        with open_env("venv", NBCORE_SHM_SPIN_US=spin_us) as env:
            expected = spin_us * 1e-6 if cpus > 1 else 0.0
            assert env.connection.channel.spin == pytest.approx(expected)
            assert env.call("shm_targets:spin") == pytest.approx(expected)
            for i in range(50):
                assert env.call("shm_targets:echo", i) == i


def test_no_spinning_on_a_single_cpu(monkeypatch):
    import socket

    import nb_shm.worker

    monkeypatch.setattr(nb_shm.worker, "_cpus", lambda: 1)
    a, b = os.pipe()
    sock, other = socket.socketpair()
    channel = nb_shm.worker.make_channel(a, b, sock, {"spin_us": 500, "limit": 1 << 20})
    try:
        assert channel.spin == 0
    finally:
        channel.close()
        other.close()


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_large_pickle_loads_from_pages_unmapped_as_they_are_read(monkeypatch, protocol):
    """Protocol 2 reads its globals line by line, protocol 5 its bytes with readinto: both from the pages."""
    monkeypatch.setattr(PagesReader, "CHUNK", 4 * mmap.PAGESIZE)
    value = {"blob": bytes(range(256)) * 4099, "text": "é" * 5000, "kind": collections.OrderedDict, "n": [1.5, -2]}
    data = pickle.dumps(value, protocol)
    mapping = mmap.mmap(-1, len(data) + 2 * mmap.PAGESIZE)
    address = mmap.PAGESIZE + 7
    mapping[address:address + len(data)] = data
    view = memoryview(mapping)[address:address + len(data)]
    assert pickle.load(PagesReader(view, mapping, address)) == value
    assert mapping[address:address + len(data)] == data, "unmapped pages of a shared mapping keep their content"
    view.release()
    mapping.close()
