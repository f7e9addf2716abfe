"""The shm-pickle channel: pickles on a pipe, large buffers in shared memory, release notes back.

A message on the pipe::

    header    magic "NBS1" | body bytes u64 | payloads u32 | notes u32 | new segments u32 | retired u32
    new       (segment id u32, size u64) each; their descriptors come on the unix socket
    retired   segment id u32 each
    notes     (segment id u32, region start u64) each: the sender's views of these regions are gone
    payloads  (segment id u32, region start u64, offset u64, length u64) each; segment 0 = inline
    inline    the inline payloads, back to back

Payload 0 is the pickle, the others its out-of-band buffers.  Payloads under
:data:`INLINE_MAX` travel inline; larger ones are placed in the sender's
shared memory (once) and reach the receiver as views.  A pickle of
:data:`STREAM_PICKLE` bytes or more without out-of-band buffers (a large
``bytes`` or ``str``) is unpickled from the sender's pages, each one unmapped
here once read, so the result never needs twice its size in the receiver.
"""
import functools
import mmap
import os
import pickle
import select
import struct
import time

from nbcore.worker import (Channel, ConnectionClosed, DecodeError, EncodeError, Pickling, ProtocolError, pooled_buffer,
                           unpickle, write_all)

from .links import recv_fds, send_fds
from .segments import Incoming, Outgoing

PROTOCOL = "shm-pickle"
MAGIC = b"NBS1"
HEAD = struct.Struct("<4sQIIII")
PAYLOAD = struct.Struct("<IQQQ")
NOTE = struct.Struct("<IQ")
NEW = struct.Struct("<IQ")
RETIRED = struct.Struct("<I")
SMALL = struct.Struct(HEAD.format + PAYLOAD.format[1:])
#: Payloads smaller than this travel on the pipe; larger ones through shared memory.
INLINE_MAX = 64 * 1024
SCRATCH = 256 * 1024
#: A pickle at least this large with no out-of-band buffers is unpickled from shared memory page by page.
STREAM_PICKLE = 8 << 20
#: Gives the CPU to another runnable task, if any (a no-op where the system lacks it).
_yield_cpu = getattr(os, "sched_yield", None) or (lambda: None)


class ShmChannel(Channel):
    """A shm-pickle link; the same class on both sides.

    Received buffers are views into the peer's shared memory, released when
    garbage collected.  Set :attr:`copy` to get ordinary heap buffers instead.
    """

    protocol = PROTOCOL

    def __init__(self, read_fd, write_fd, sock, directory, segment_size, limit, copy=False, spin=0.0):
        super().__init__()
        self._rfd = read_fd
        self._wfd = write_fd
        self._sock = sock
        self._out = Outgoing(directory, segment_size, limit)
        self._in = Incoming()
        self._pickling = Pickling(self.pickle_protocol)
        #: When true, received buffers are copied to the heap and shared memory is released at once.
        self.copy = copy
        #: Seconds :meth:`recv` polls for the next message before it blocks in ``read`` (0: block at once).
        self.spin = spin
        self._poll = select.poll()
        self._poll.register(read_fd, select.POLLIN)
        self._scratch = bytearray(SCRATCH)
        self._view = memoryview(self._scratch)
        self._start = 0
        self._end = 0
        self._closed = False

    # sending -------------------------------------------------------------
    def send(self, message):
        pickling = self._pickling
        if pickling.protocol != self.pickle_protocol:
            pickling = self._pickling = Pickling(self.pickle_protocol)
        try:  # the whole message, flat buffers included, before anything is placed or written
            data, buffers = pickling.dumps(message)
            if buffers:
                buffers = [b.raw() for b in buffers]
        except Exception as exc:
            raise EncodeError(exc) from exc
        out = self._out
        notes = self._in.released
        if out.idle:
            with out.lock:
                out.trim()
        n = len(data)
        if not buffers and n < INLINE_MAX and not out.new and not out.retired:
            if notes:  # release notes ride on a small message: no tables, no lock
                parts = [None]
                for _ in range(len(notes)):
                    parts.append(NOTE.pack(*notes.popleft()))
                n_notes = len(parts) - 1
                parts[0] = HEAD.pack(MAGIC, n_notes * NOTE.size + PAYLOAD.size + n, 1, n_notes, 0, 0)
                parts.append(PAYLOAD.pack(0, 0, 0, n))
                parts.append(data)
                message = b"".join(parts)
            else:
                message = SMALL.pack(MAGIC, PAYLOAD.size + n, 1, 0, 0, 0, 0, 0, 0, n) + data
            self._write_message(message)
            return
        tables = []
        inline = []
        inline_bytes = 0
        closed = self._closed
        with out.lock:
            if out.dropped:
                out.drain()
            for chunk in [data] + buffers if buffers else (data,):
                n = len(chunk)  # bytes, or a raw (flat, unsigned byte) memoryview
                where = out.place(chunk, n) if n >= INLINE_MAX and not closed else None
                if where is None:
                    tables.append(PAYLOAD.pack(0, 0, 0, n))
                    inline.append(chunk)
                    inline_bytes += n
                else:
                    tables.append(PAYLOAD.pack(where[0], where[1], where[2], n))
            new, retired = out.new, out.retired
            if new:  # under the lock: no other thread may retire (and close) them before they are sent
                out.new = []
                try:
                    send_fds(self._sock, b"\0", [s.fd for s in new])
                except OSError as exc:
                    raise ConnectionClosed(str(exc)) from None
            if retired:
                out.retired = []
        head = [None]
        if new:
            head += [NEW.pack(s.id, s.size) for s in new]
        if retired:
            head += [RETIRED.pack(i) for i in retired]
        n_notes = 0
        while notes:
            head.append(NOTE.pack(*notes.popleft()))
            n_notes += 1
        head += tables
        head[0] = HEAD.pack(MAGIC, len(new) * NEW.size + len(retired) * RETIRED.size + n_notes * NOTE.size
                            + len(tables) * PAYLOAD.size + inline_bytes, len(tables), n_notes, len(new), len(retired))
        if inline_bytes < INLINE_MAX:
            message = b"".join(head + inline)
            self._write_message(message)
        else:
            self._write([b"".join(head)] + inline)

    def _write_message(self, message):
        """Write one message: a single ``write`` when the pipe has room, the rest in further steps."""
        try:
            written = os.write(self._wfd, message)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        if written < len(message):
            self._write([memoryview(message)[written:]])

    def _write(self, parts):
        """Write all of ``parts`` (several steps when the pipe fills up)."""
        try:
            write_all(functools.partial(os.writev, self._wfd), parts)
        except OSError as exc:  # BrokenPipeError: the peer is gone; EBADF: closed
            raise ConnectionClosed(str(exc)) from None

    # receiving -----------------------------------------------------------
    def _need(self, n):
        """Make ``n`` bytes available in the scratch buffer from ``_start``."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._start + n > SCRATCH:
            pending = bytes(self._view[self._start:self._end])
            self._view[:len(pending)] = pending
            self._start, self._end = 0, len(pending)
        while self._end - self._start < n:
            self._end += self._read_into(self._view[self._end:])

    def _read_into(self, target):
        try:
            got = os.readv(self._rfd, [target])
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from None
        if not got:
            raise ConnectionClosed("the peer closed the connection")
        return got

    def _spin(self):
        """Poll for up to :attr:`spin` seconds without sleeping; the blocking read follows either way.

        A process that sleeps in ``read`` gives up its CPU: waking it costs
        microseconds, and it often resumes on another CPU with cold caches.
        Every turn yields the CPU to any other runnable task on it: after both
        sides slept, the kernel often wakes the peer on the waker's CPU, and
        without the yield the peer would wait there until the spin runs out
        (a call 4-5x slower, measured with a host that sleeps between calls).
        """
        poll = self._poll.poll
        if poll(0):
            return
        clock = time.perf_counter
        yield_cpu = _yield_cpu
        deadline = clock() + self.spin
        while clock() < deadline:
            if poll(0):
                return
            yield_cpu()

    def recv(self):
        if self._end - self._start < HEAD.size:
            if self.spin and self._start == self._end:
                self._spin()
            self._need(HEAD.size)
        start = self._start
        magic, size, n_payloads, n_notes, n_new, n_retired = HEAD.unpack_from(self._scratch, start)
        if magic != MAGIC or not n_payloads:
            raise ProtocolError("not a shm-pickle message (magic %r)" % bytes(magic))
        total = HEAD.size + size
        if total > SCRATCH:
            self._start = start + HEAD.size
            return self._decode(self._read_large(size), True, n_payloads, n_notes, n_new, n_retired)
        if self._end - start < total:
            self._need(total)
            start = self._start
        body = self._view[start + HEAD.size:start + total]
        self._start = start + total
        if n_payloads == 1 and not (n_new or n_retired):  # a small message, perhaps with release notes
            pos = n_notes * NOTE.size
            segment_id, _, _, length = PAYLOAD.unpack_from(body, pos)
            if not segment_id:
                if n_notes:
                    out = self._out
                    with out.lock:
                        out.release_all(NOTE.iter_unpack(body[:pos]))
                pos += PAYLOAD.size
                return unpickle(body[pos:pos + length])
        return self._decode(body, False, n_payloads, n_notes, n_new, n_retired)

    def _read_large(self, size):
        """Read a body too large for the scratch buffer into a buffer of its own."""
        body = memoryview(pooled_buffer(size))
        have = min(self._end - self._start, size)
        body[:have] = self._view[self._start:self._start + have]
        self._start += have
        while have < size:
            have += self._read_into(body[have:])
        return body

    def _decode(self, body, owned, n_payloads, n_notes, n_new, n_retired):
        """Apply the tables of a message and unpickle it; ``owned``: ``body`` is not the scratch buffer."""
        pos = 0
        if n_new:
            pos = self._add_segments(body, n_new)
        if n_retired:
            end = pos + n_retired * RETIRED.size
            for segment_id, in RETIRED.iter_unpack(body[pos:end]):
                self._in.retire(segment_id)
            pos = end
        if n_notes:
            end = pos + n_notes * NOTE.size
            out = self._out
            with out.lock:
                out.release_all(NOTE.iter_unpack(body[pos:end]))
            pos = end
        if n_payloads == 1:
            segment_id, start, offset, length = PAYLOAD.unpack_from(body, pos)
            if segment_id and length >= STREAM_PICKLE:
                return self._load_from_pages(segment_id, start, offset, length)
        inline = end = pos + n_payloads * PAYLOAD.size
        chunks = []
        segments = self._in.segments
        notify = self._in.notify
        for segment_id, start, offset, length in PAYLOAD.iter_unpack(body[pos:end]):
            if not segment_id:
                chunk = body[inline:inline + length]
                inline += length
                if chunks and not owned:
                    chunk = bytearray(chunk)
            else:
                segment = segments.get(segment_id)
                if segment is None:
                    raise ProtocolError("message refers to unknown segment %d" % segment_id)
                chunk = segment.view(start, offset, length, notify)
                if chunks and self.copy:
                    heap = pooled_buffer(length)
                    memoryview(heap)[:length] = chunk
                    chunk = heap
            chunks.append(chunk)
        data = chunks[0]
        del chunks[0]
        return unpickle(data, chunks)

    def _load_from_pages(self, segment_id, start, offset, length):
        """Unpickle a large pickle that has no out-of-band buffers, unmapping its pages as they are read."""
        segment = self._in.segments.get(segment_id)
        if segment is None:
            raise ProtocolError("message refers to unknown segment %d" % segment_id)
        reader = PagesReader(segment.view(start, offset, length, self._in.notify), segment.map, start + offset)
        try:
            return pickle.load(reader)
        except Exception as exc:
            raise DecodeError(exc) from exc

    def _add_segments(self, body, count):
        _, fds = recv_fds(self._sock, 1, count)
        if len(fds) != count:
            for fd in fds:
                os.close(fd)
            raise ProtocolError("expected %d segment descriptors, got %d" % (count, len(fds)))
        pos = 0
        for fd in fds:
            segment_id, size = NEW.unpack_from(body, pos)
            pos += NEW.size
            self._in.add(segment_id, fd, size)
        return pos

    # buffers and lifetime ----------------------------------------------
    def allocate(self, nbytes):
        """A writable buffer in this side's shared memory (ordinary memory when small or full)."""
        if nbytes >= INLINE_MAX and not self._closed:
            with self._out.lock:
                view = self._out.allocate(nbytes)
            if view is not None:
                return view
        return pooled_buffer(nbytes)

    def close(self):
        if self._closed:
            return
        self._closed = True
        fds, self._rfd, self._wfd = (self._rfd, self._wfd), -1, -1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._sock.close()
        with self._out.lock:
            self._out.close()
        self._in.close()


class PagesReader:
    """A pickle in a mapping of the peer's shared memory, as a file for ``pickle.load``.

    ``pickle.load`` reads a large ``bytes`` with :meth:`readinto`, straight into
    the object it builds; every whole page read is unmapped from this process
    (``MADV_DONTNEED``: the peer's file keeps its content), so the resident
    memory grows by the object being built, not by the pickle too.
    """

    #: Bytes copied between two unmappings.
    CHUNK = 16 << 20

    def __init__(self, view, mapping, address):
        self._view = view
        self._pos = 0
        self._map = mapping
        self._address = address
        self._unmapped = -(-address // mmap.PAGESIZE) * mmap.PAGESIZE

    def read(self, n=-1):
        end = len(self._view) if n is None or n < 0 else min(len(self._view), self._pos + n)
        out = bytes(self._view[self._pos:end])
        self._advance(end)
        return out

    def readinto(self, target):
        target = memoryview(target).cast("B")
        n = min(target.nbytes, len(self._view) - self._pos)
        done = 0
        while done < n:
            step = min(self.CHUNK, n - done)
            target[done:done + step] = self._view[self._pos:self._pos + step]
            done += step
            self._advance(self._pos + step)
        return n

    def readline(self):
        stop = self._map.find(b"\n", self._address + self._pos, self._address + len(self._view))
        return self.read(len(self._view) - self._pos if stop < 0 else stop + 1 - self._address - self._pos)

    def _advance(self, pos):
        self._pos = pos
        page = (self._address + pos) // mmap.PAGESIZE * mmap.PAGESIZE
        if page - self._unmapped >= self.CHUNK or pos == len(self._view) and page > self._unmapped:
            self._map.madvise(mmap.MADV_DONTNEED, self._unmapped, page - self._unmapped)
            self._unmapped = page
