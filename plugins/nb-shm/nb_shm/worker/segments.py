"""Shared memory segments: unnamed owner-only files, their mappings, and the sender's allocator.

A segment is a file in the shared memory folder (``NBCORE_SHM_DIR``, default
``/dev/shm``) that is unlinked before anyone else could open it (``O_TMPFILE``
where available), so nothing is left behind whatever way a process ends; the
peer gets the file descriptor over a unix socket.

Each side owns the segments it sends from (:class:`Outgoing`) and maps the
peer's (:class:`Incoming`).  A region of an outgoing segment is free again only
when the peer has released it (its last view was garbage collected) and, for
regions handed out by :meth:`Outgoing.allocate`, the local buffer is gone too.
Extra segments (the first one stays) are dropped after being empty for a while,
or at once when room is needed under the limit.
"""
import bisect
import collections
import itertools
import mmap
import os
import threading
import time

DEFAULT_DIR = "/dev/shm"
ALIGN = max(mmap.PAGESIZE, 4096)
#: Default size of a new segment; larger messages get a segment of their own size.
SEGMENT_SIZE = 128 << 20
#: Share of the shared memory folder's capacity one side may map at most, by default.
LIMIT_SHARE = 4
#: Seconds an extra segment stays mapped after it fell empty.
RETIRE_AFTER = 2.0


def shm_dir():
    """The folder segments are created in (``NBCORE_SHM_DIR``, default ``/dev/shm``)."""
    return os.environ.get("NBCORE_SHM_DIR") or DEFAULT_DIR


def capacity(directory):
    """Total bytes of the file system holding ``directory``."""
    st = os.statvfs(directory)
    return st.f_blocks * st.f_frsize


def create_file(directory, size):
    """Return the descriptor of a new, already unlinked, owner-only file of ``size`` bytes."""
    fd = None
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = None
    if fd is None:
        path = os.path.join(directory, ".nbcore-shm-" + os.urandom(16).hex())
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def probe(directory):
    """Return None when segments can be created in ``directory``, else the reason."""
    if not os.path.isdir(directory):
        return "no shared memory folder %s (set NBCORE_SHM_DIR to a tmpfs folder)" % directory
    try:
        fd = create_file(directory, ALIGN)
        try:
            mmap.mmap(fd, ALIGN).close()
        finally:
            os.close(fd)
    except (OSError, ValueError) as exc:
        return "cannot create shared memory in %s: %s" % (directory, exc)
    return None


class Segment:
    """One mapped shared memory file (outgoing ones also track their free space)."""

    def __init__(self, segment_id, fd, size, owned):
        self.id = segment_id
        self.size = size
        self.map = mmap.mmap(fd, size)
        from .addresses import address_of  # imported with the first segment (ctypes: see there)
        self.base = address_of(self.map)
        self.fd = fd if owned else None
        if not owned:
            os.close(fd)
        self.free = [(0, size)]
        #: Regions carved out of this segment and not given back.
        self.used = 0
        self.reserved = 0

    def view(self, start, offset, length, notify):
        """A writable view of ``length`` bytes at ``start + offset``; ``notify((id, start))`` when it dies."""
        from .addresses import Exporter
        exporter = Exporter.from_address(self.base + start)
        exporter.owner = (notify, (self.id, start), self)
        return memoryview(exporter).cast("B")[offset:offset + length]

    def take(self, size):
        """First fit: the start of ``size`` free bytes, or None (also when the file system is full)."""
        free = self.free
        for i, (start, length) in enumerate(free):
            if length >= size:
                end = start + size
                if end > self.reserved:
                    try:
                        self._reserve(end)
                    except OSError:  # the shared memory file system is full
                        return None
                if length == size:
                    del free[i]
                else:
                    free[i] = (end, length - size)
                self.used += 1
                return start
        return None

    def _reserve(self, end):
        """Back the file up to ``end`` with real pages, so a full tmpfs is an error here, not a SIGBUS later."""
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(self.fd, self.reserved, end - self.reserved)
        self.reserved = end

    def give(self, start, size):
        """Return a region to the free list, merging it with its neighbours."""
        self.used -= 1
        i = bisect.bisect_left(self.free, (start, 0))
        if i < len(self.free) and start + size == self.free[i][0]:
            size += self.free.pop(i)[1]
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == start:
            start, size = self.free[i - 1][0], self.free[i - 1][1] + size
            del self.free[i - 1]
            i -= 1
        self.free.insert(i, (start, size))

    def is_empty(self):
        return not self.used

    def close(self):
        """Drop this side's handle; the mapping itself ends with its last view."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _Region:
    """``size`` bytes at ``start`` in ``segment``; ``local``: a buffer from :meth:`Outgoing.allocate` lives,
    ``remote``: how many messages the peer has not released yet."""

    __slots__ = ("segment", "start", "size", "key", "address", "local", "remote")

    def __init__(self, segment, start, size):
        self.segment = segment
        self.start = start
        self.size = size
        self.key = (segment.id, start)
        self.address = segment.base + start
        self.local = False
        self.remote = 0


class Outgoing:
    """The segments this side sends from, and who still uses each region of them.

    Not thread-safe by itself: callers hold :attr:`lock`.  :attr:`dropped` is
    filled by garbage collection at any moment, so it is a deque drained under
    the lock.

    A region of the first segment that falls free is kept as it is, in
    :attr:`spare`, and the next request of the same size takes it back without
    searching the free list: a worker returning frames of one shape reuses the
    same regions call after call.  Spare regions go back to the free list when
    a request finds no room.
    """

    def __init__(self, directory, segment_size, limit):
        self.directory = directory
        self.limit = limit
        self.segment_size = min(segment_size, limit)
        self.lock = threading.Lock()
        self.segments = []
        #: Regions in use by key ``(segment id, start)``.
        self.regions = {}
        #: Regions handed out by :meth:`allocate` whose buffer is alive, by address.
        self.allocated = {}
        #: Free regions of the first segment kept for reuse, by size.
        self.spare = {}
        #: ``(segment, fd)`` created since the last message; the next message announces them.
        self.new = []
        #: Ids of segments dropped since the last message.
        self.retired = []
        #: Keys of regions whose local buffer (from :meth:`allocate`) was garbage collected.
        self.dropped = collections.deque()
        self._drop = self.dropped.append
        #: Bytes of segments mapped, and of regions in use.
        self.mapped = 0
        self.in_use = 0
        #: Extra segments that are empty, with the time they became so.
        self.idle = {}
        #: Seconds an extra segment stays mapped while empty (repeated large messages reuse it).
        self.retire_after = RETIRE_AFTER
        self._ids = itertools.count(1)

    def allocate(self, nbytes):
        """A writable view of a new region for the caller to fill, or None when shared memory is full."""
        if self.dropped:
            self.drain()
        region = self._alloc(nbytes)
        if region is None:
            return None
        region.local = True
        self.allocated[region.address] = region
        return region.segment.view(region.start, 0, nbytes, self._drop)

    def place(self, buffer, nbytes=None):
        """Put ``buffer`` (a flat byte buffer of ``nbytes``) in shared memory; return ``(segment_id, start, offset)`` or None.

        A buffer that lies in a region from :meth:`allocate` is not copied.
        """
        if nbytes is None:
            nbytes = memoryview(buffer).nbytes
        if self.allocated:  # a buffer from allocate(), or a part of one, is sent where it lies
            found = self._allocated_holding(buffer, nbytes)
            if found is not None:
                region, offset = found
                region.remote += 1
                return region.segment.id, region.start, offset
        region = self._alloc(nbytes)
        if region is None:
            return None
        region.remote = 1
        segment = region.segment
        from .addresses import copy_without_gil
        if not copy_without_gil(region.address, buffer, nbytes):
            segment.map[region.start:region.start + nbytes] = buffer
        return segment.id, region.start, 0

    def _allocated_holding(self, buffer, nbytes):
        """``(region, offset)`` of the region from :meth:`allocate` that holds all of ``buffer``, else None."""
        from .addresses import address_of
        try:
            address = address_of(buffer)
        except (TypeError, ValueError):  # read-only or empty: not one of ours
            return None
        region = self.allocated.get(address)
        if region is None:  # perhaps a part of an allocated buffer
            region = next((r for r in self.allocated.values() if r.address <= address < r.address + r.size), None)
            if region is None:
                return None
        offset = address - region.address
        return (region, offset) if offset + nbytes <= region.size else None

    def release(self, key):
        """The peer no longer uses the region ``key`` (a release note)."""
        self.release_all((key,))

    def release_all(self, keys):
        """The peer no longer uses the regions ``keys`` (release notes)."""
        regions = self.regions
        for key in keys:
            region = regions.get(key)
            if region is not None:
                region.remote -= 1
                if region.remote <= 0 and not region.local:
                    self._free(region)

    def drain(self):
        """Apply the local buffers that were garbage collected."""
        dropped = self.dropped
        regions = self.regions
        while dropped:
            region = regions.get(dropped.popleft())
            if region is not None and region.local:
                region.local = False
                del self.allocated[region.address]
                if region.remote <= 0:
                    self._free(region)

    def _alloc(self, nbytes):
        size = -(-nbytes // ALIGN) * ALIGN or ALIGN
        spare = self.spare.get(size)
        if spare:
            region = spare.pop()
        else:
            region = self._carve(size)
            if region is None:
                return None
        self.regions[region.key] = region
        self.in_use += size
        return region

    def _carve(self, size):
        """A new region of ``size`` bytes from the free lists, a new segment, or None."""
        for segment in self.segments:
            start = segment.take(size)
            if start is not None:
                break
        else:
            if self.spare:
                self.return_spare()
                return self._carve(size)
            segment = self._grow(size)
            if segment is None:
                return None
            start = segment.take(size)
            if start is None:
                return None
        if self.idle:
            self.idle.pop(segment, None)
        return _Region(segment, start, size)

    def _free(self, region):
        del self.regions[region.key]
        self.in_use -= region.size
        segment = region.segment
        if segment is self.segments[0]:
            region.remote = 0
            self.spare.setdefault(region.size, []).append(region)
            return
        segment.give(region.start, region.size)
        if segment.is_empty():
            self.idle[segment] = time.monotonic()

    def return_spare(self):
        """Give the spare regions back to the free list of their segment."""
        for spare in self.spare.values():
            for region in spare:
                region.segment.give(region.start, region.size)
        self.spare = {}

    def trim(self):
        """Drop the extra segments that have been empty for :attr:`retire_after` seconds."""
        now = time.monotonic()
        for segment, since in list(self.idle.items()):
            if now - since >= self.retire_after:
                self._retire(segment)

    def _grow(self, size):
        want = max(self.segment_size, size)
        if self.mapped + want > self.limit:
            self._retire_empty()
        if self.mapped + want > self.limit:
            want = size
            if self.mapped + want > self.limit:
                return None
        try:
            fd = create_file(self.directory, want)
        except OSError:
            return None
        try:
            segment = Segment(next(self._ids), fd, want, owned=True)
        except BaseException:
            os.close(fd)
            raise
        self.segments.append(segment)
        self.new.append(segment)
        self.mapped += want
        return segment

    def _retire_empty(self):
        self.return_spare()
        for segment in [s for s in self.segments if s.is_empty()]:
            self._retire(segment)

    def _retire(self, segment):
        """Drop an empty segment; the peer is told with the next message."""
        self.segments.remove(segment)
        self.idle.pop(segment, None)
        self.mapped -= segment.size
        if segment in self.new:
            self.new.remove(segment)
        else:
            self.retired.append(segment.id)
        segment.close()

    def close(self):
        for segment in self.segments:
            segment.close()
        self.segments = []
        self.regions = {}
        self.allocated = {}
        self.spare = {}
        self.new = []
        self.idle = {}
        self.mapped = self.in_use = 0


class Incoming:
    """The peer's segments as mapped on this side, and the release notes owed to the peer."""

    def __init__(self):
        self.segments = {}
        #: Keys of the peer's regions this side no longer uses; sent with the next message.
        self.released = collections.deque()
        #: What a view calls with its key when it is gone.
        self.notify = self.released.append

    def add(self, segment_id, fd, size):
        self.segments[segment_id] = Segment(segment_id, fd, size, owned=False)

    def retire(self, segment_id):
        self.segments.pop(segment_id, None)

    def view(self, segment_id, start, offset, length):
        return self.segments[segment_id].view(start, offset, length, self.notify)

    def close(self):
        self.segments = {}
