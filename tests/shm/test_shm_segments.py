"""The sender's allocator: regions, release by both sides, growth, the limit, coalescing; segment files."""
import gc
import os
import stat

import pytest

from nb_shm.worker import segments
from nb_shm.worker.segments import ALIGN, Incoming, Outgoing

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")


@pytest.fixture
def out():
    out = Outgoing("/dev/shm", 16 * ALIGN, 64 * ALIGN)
    yield out
    out.close()


def test_segment_files_are_private_and_unnamed(tmp_path):
    fd = segments.create_file(str(tmp_path), ALIGN)
    try:
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        assert os.fstat(fd).st_nlink == 0
        assert os.listdir(tmp_path) == []
    finally:
        os.close(fd)


def test_probe_reports_a_missing_folder(tmp_path):
    assert "no shared memory folder" in segments.probe(str(tmp_path / "missing"))
    assert segments.probe(str(tmp_path)) is None


def test_placed_region_is_freed_by_the_peers_release(out):
    data = memoryview(bytearray(b"x" * 5000))
    where = out.place(data)
    assert where[2] == 0 and len(out.regions) == 1
    assert bytes(out.segments[0].map[where[1]:where[1] + 5000]) == b"x" * 5000
    out.release(where[:2])
    assert out.regions == {} and out.in_use == 0
    out.return_spare()
    assert out.segments[0].free == [(0, 16 * ALIGN)]


def test_a_freed_region_is_reused_for_the_same_size(out):
    first = out.place(memoryview(bytearray(3 * ALIGN)))
    out.release(first[:2])
    other = out.place(memoryview(bytearray(ALIGN)))
    again = out.place(memoryview(bytearray(3 * ALIGN)))
    assert again == first and other[1] == 3 * ALIGN


def test_spare_regions_make_room_when_a_request_finds_none(out):
    keys = [out.place(memoryview(bytearray(ALIGN)))[:2] for _ in range(16)]
    for key in keys:
        out.release(key)
    whole = out.place(memoryview(bytearray(16 * ALIGN)))
    assert whole[:2] == (1, 0) and len(out.segments) == 1


def test_allocated_region_needs_both_sides_to_let_go(out):
    view = out.allocate(3 * ALIGN)
    view[:3] = b"abc"
    where = out.place(view[1:3])  # a slice of an allocated buffer is sent in place
    assert where[2] == 1 and len(out.regions) == 1
    key = where[:2]
    del view, where
    gc.collect()
    out.drain()
    assert key in out.regions  # the peer still has it
    out.release(key)
    assert out.regions == {}


def test_views_of_received_regions_report_release_when_gone():
    out = Outgoing("/dev/shm", 4 * ALIGN, 16 * ALIGN)
    incoming = Incoming()
    where = out.place(memoryview(bytearray(b"y" * 100)))
    segment = out.segments[0]
    incoming.add(segment.id, os.dup(segment.fd), segment.size)
    view = incoming.view(segment.id, where[1], where[2], 100)
    derived = memoryview(view)[10:20]
    del view
    assert not incoming.released
    assert bytes(derived) == b"y" * 10
    del derived
    assert list(incoming.released) == [where[:2]]
    out.close()


def test_grows_then_refuses_beyond_the_limit(out):
    held = [out.place(memoryview(bytearray(8 * ALIGN))) for _ in range(8)]
    assert all(h is not None for h in held)
    assert out.mapped == 64 * ALIGN
    assert out.place(memoryview(bytearray(8 * ALIGN))) is None
    assert out.allocate(ALIGN) is None
    assert len(out.new) == 4


def test_empty_segments_are_retired_to_make_room(out):
    first = [out.place(memoryview(bytearray(16 * ALIGN))) for _ in range(4)]
    out.new = []  # announced
    for where in first:
        out.release(where[:2])
    assert out.retired == [] and set(out.idle) == set(out.segments[1:])  # kept a while for reuse
    big = out.place(memoryview(bytearray(60 * ALIGN)))
    assert big is not None
    assert sorted(out.retired) == [1, 2, 3, 4]
    assert out.mapped == 60 * ALIGN


def test_free_space_coalesces(out):
    keys = [out.place(memoryview(bytearray(ALIGN)))[:2] for _ in range(16)]
    for key in keys[1::2] + keys[0::2]:
        out.release(key)
    out.return_spare()
    assert out.segments[0].free == [(0, 16 * ALIGN)]


def test_extra_segments_are_dropped_after_being_empty_a_while(out):
    held = [out.place(memoryview(bytearray(16 * ALIGN)))[:2] for _ in range(3)]
    out.new = []
    out.release(held[1])
    out.trim()
    assert out.retired == []  # not yet
    out.release(held[2])
    again = out.place(memoryview(bytearray(16 * ALIGN)))  # reuses an idle segment, no new one
    assert again[0] in (2, 3) and out.mapped == 48 * ALIGN
    out.retire_after = 0
    out.release(again[:2])
    out.release(held[0])
    out.trim()
    assert sorted(out.retired) == [2, 3] and out.mapped == 16 * ALIGN
