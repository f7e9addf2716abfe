"""Message framing over a stream socket, shared by host and worker.

A message is a pickle plus zero or more out-of-band buffers (pickle protocol 5).
On the wire::

    header   magic "NBC1" | buffer count u32 | pickle length u64 | crc32 u32
    table    buffer count x u64 (the length of each buffer)
    pickle   the pickle bytes
    buffers  each buffer, back to back

The crc32 covers the counts and the table, so garbage or a truncated stream is
reported as a :class:`ProtocolError` before anything large is allocated.

Large buffers are received straight into their final memory (``recv_into``), and
a large pickle without out-of-band buffers (a ``bytes`` or ``str`` result, or
arrays pickled below protocol 5) is unpickled straight from the socket
(:class:`PickleStream`), so a result never needs twice its size in the receiver.
"""
import mmap
import os
import pickle
import socket
import struct
import sys
import zlib

MAGIC = b"NBC1"
HEADER = struct.Struct("<4sIQI")
MAX_BUFFERS = 1 << 20
READ_AHEAD = 64 * 1024
LARGE_BUFFER = 1 << 20
#: A pickle at least this large with no out-of-band buffers is unpickled from the socket as it arrives.
STREAM_PICKLE = 8 << 20
IOV_MAX = 512


class ConnectionClosed(EOFError):
    """The peer closed the connection (or died)."""


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid nbcore message."""


def _max_message_bytes():
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


MAX_MESSAGE_BYTES = _max_message_bytes()


def highest_pickle_protocol():
    """The highest pickle protocol this interpreter writes (``NBCORE_PICKLE_PROTOCOL_MAX`` lowers it)."""
    forced = os.environ.get("NBCORE_PICKLE_PROTOCOL_MAX")
    if forced:
        return min(int(forced), pickle.HIGHEST_PROTOCOL)
    return pickle.HIGHEST_PROTOCOL


class BufferPool:
    """Large receive buffers, reused once the program holds no reference to them.

    Writing into fresh pages costs several times a memcpy (page faults), so a
    block is kept after use; when nothing but the pool refers to it any more
    (every array built on it was dropped), the next message of a fitting size
    lands in it.  Blocks still in use are never handed out twice.  At most
    ``keep_bytes`` of blocks are tracked (``NBCORE_BUFFER_POOL_MB``).
    """

    def __init__(self, keep_bytes):
        self.keep_bytes = keep_bytes
        self.blocks = []

    def get(self, size):
        blocks = self.blocks
        for index in range(len(blocks)):
            block = blocks[index]
            # references: the list, ``block``, getrefcount's argument
            if size <= len(block) <= 2 * size and sys.getrefcount(block) == 3:
                blocks.append(blocks.pop(index))
                return block if len(block) == size else memoryview(block)[:size]
        block = mmap.mmap(-1, size)
        if hasattr(block, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            block.madvise(mmap.MADV_HUGEPAGE)
        blocks.append(block)
        self._trim()
        return block

    def _trim(self):
        total = sum(len(b) for b in self.blocks)
        while total > self.keep_bytes and len(self.blocks) > 1:
            total -= len(self.blocks.pop(0))


#: Megabytes of receive buffers kept when ``NBCORE_BUFFER_POOL_MB`` is unset.
DEFAULT_POOL_MB = 1024


def pool_megabytes():
    """``NBCORE_BUFFER_POOL_MB`` as a whole number of megabytes (0 or more), None when it is not one (the host
    says so in one line before it starts a worker; a worker given one keeps the default)."""
    text = os.environ.get("NBCORE_BUFFER_POOL_MB", "").strip() or str(DEFAULT_POOL_MB)
    return int(text) if text.isdigit() else None


_pool = BufferPool((pool_megabytes() if pool_megabytes() is not None else DEFAULT_POOL_MB) << 20)


def allocate(size):
    """A writable buffer of ``size`` bytes; large ones come from the reuse pool (no zero-fill pass)."""
    if size < LARGE_BUFFER:
        return bytearray(size)
    return _pool.get(size)


COUNTS = struct.Struct("<IQ")


def encode_header(pickle_len, buffer_lens):
    """Header and length table for a message (see the module docstring)."""
    counts = COUNTS.pack(len(buffer_lens), pickle_len)
    if not buffer_lens:
        return HEADER.pack(MAGIC, 0, pickle_len, zlib.crc32(counts))
    table = struct.pack("<%dQ" % len(buffer_lens), *buffer_lens)
    return HEADER.pack(MAGIC, len(buffer_lens), pickle_len, zlib.crc32(table, zlib.crc32(counts))) + table


def write_all(write, parts):
    """Write every byte of ``parts`` with ``write(buffers) -> bytes written`` (``sendmsg``, ``writev``),
    calling it again after partial writes."""
    parts = [memoryview(p) for p in parts if len(p)]
    while parts:
        written = write(parts[:IOV_MAX])
        while written:
            first = parts[0]
            if written >= first.nbytes:
                written -= first.nbytes
                parts.pop(0)
            else:
                parts[0] = first[written:]
                written = 0


class SocketFramer:
    """Sends and receives framed messages on a connected stream socket."""

    def __init__(self, sock):
        self.sock = sock
        self._scratch = bytearray(READ_AHEAD)
        self._view = memoryview(self._scratch)
        self._start = 0
        self._end = 0

    # sending -------------------------------------------------------------
    def send_message(self, data, buffers):
        try:
            if not buffers:
                self.sock.sendall(encode_header(len(data), ()) + data)
                return
            raw = [memoryview(b).cast("B") for b in buffers]
            write_all(self.sock.sendmsg, [encode_header(len(data), [r.nbytes for r in raw]), data] + raw)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionClosed(str(exc)) from None


    # receiving -----------------------------------------------------------
    def _fill(self):
        """Read more bytes into the scratch buffer; raise ConnectionClosed on EOF."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._scratch):
            pending = self._end - self._start
            self._scratch[:pending] = self._scratch[self._start:self._end]
            self._start, self._end = 0, pending
        try:
            n = self.sock.recv_into(self._view[self._end:])
        except ConnectionResetError as exc:
            raise ConnectionClosed(str(exc)) from None
        if n == 0:
            raise ConnectionClosed("the peer closed the connection")
        self._end += n

    def _take(self, size):
        """Return ``size`` bytes as an independent bytes object."""
        while self._end - self._start < size and size <= len(self._scratch):
            self._fill()
        if size <= len(self._scratch):
            out = bytes(self._view[self._start:self._start + size])
            self._start += size
            return out
        out = allocate(size)
        self._read_into(memoryview(out))
        return out

    def _read_into(self, target):
        """Fill ``target`` completely: first from read-ahead, then straight from the socket."""
        have = min(self._end - self._start, target.nbytes)
        target[:have] = self._view[self._start:self._start + have]
        self._start += have
        pos = have
        total = target.nbytes
        while pos < total:
            try:
                n = self.sock.recv_into(target[pos:], total - pos, socket.MSG_WAITALL)
            except ConnectionResetError as exc:
                raise ConnectionClosed(str(exc)) from None
            if n == 0:
                raise ConnectionClosed("the peer closed the connection in the middle of a message")
            pos += n

    def recv_message(self, stream=False):
        """Return ``(pickle_bytes, buffers)`` of the next message.

        With ``stream``, a pickle of :data:`STREAM_PICKLE` bytes or more that has no
        out-of-band buffers comes as a :class:`PickleStream` still to be read instead.
        """
        while self._end - self._start < HEADER.size:
            self._fill()
        magic, count, pickle_len, crc = HEADER.unpack_from(self._scratch, self._start)
        if magic != MAGIC:
            raise ProtocolError("not an nbcore message (bad magic %r)" % bytes(magic))
        if count > MAX_BUFFERS:
            raise ProtocolError("corrupt message header (%d buffers)" % count)
        self._start += HEADER.size
        if not count:
            if zlib.crc32(COUNTS.pack(0, pickle_len)) != crc:
                raise ProtocolError("corrupt message header (checksum mismatch)")
            if pickle_len > MAX_MESSAGE_BYTES:
                raise ProtocolError("message of %d bytes is larger than this machine's memory" % pickle_len)
            start = self._start
            if stream and pickle_len >= STREAM_PICKLE:
                return PickleStream(self, pickle_len), ()
            if self._end - start >= pickle_len:  # the usual case: the whole message came in one read
                self._start = start + pickle_len
                return bytes(self._view[start:start + pickle_len]), ()
            return self._take(pickle_len), ()
        table = self._take(8 * count)
        if zlib.crc32(table, zlib.crc32(COUNTS.pack(count, pickle_len))) != crc:
            raise ProtocolError("corrupt message header (checksum mismatch)")
        lens = struct.unpack("<%dQ" % count, table)
        if pickle_len + sum(lens) > MAX_MESSAGE_BYTES:
            raise ProtocolError("message of %d bytes is larger than this machine's memory" % (pickle_len + sum(lens)))
        data = self._take(pickle_len)
        buffers = []
        for n in lens:
            buf = allocate(n)
            if n:
                self._read_into(memoryview(buf))
            buffers.append(buf)
        return data, buffers


class PickleStream:
    """The pickle of a message still on the socket, as a file for ``pickle.load``.

    ``pickle.load`` reads large ``bytes`` objects with :meth:`readinto`, straight
    into the object it builds.  Call :meth:`finish` afterwards, whether unpickling
    succeeded or not: it skips what was left unread (the next message starts
    after it) and re-raises a lost connection met while reading.
    """

    def __init__(self, framer, size):
        self._framer = framer
        self._left = size
        self._error = None

    def _guard(self, read, *args):
        try:
            return read(*args)
        except ConnectionClosed as exc:
            self._error = exc
            raise

    def read(self, n=-1):
        n = self._left if n is None or n < 0 else min(n, self._left)
        self._left -= n
        if n <= READ_AHEAD:
            return self._guard(self._framer._take, n)
        out = bytearray(n)
        self._guard(self._framer._read_into, memoryview(out))
        return out

    def readinto(self, target):
        target = memoryview(target).cast("B")
        n = min(target.nbytes, self._left)
        self._left -= n
        self._guard(self._framer._read_into, target[:n])
        return n

    def readline(self):
        framer, line = self._framer, bytearray()
        while self._left and not line.endswith(b"\n"):
            if framer._end == framer._start:
                self._guard(framer._fill)
            end = min(framer._end, framer._start + self._left)
            newline = framer._scratch.find(b"\n", framer._start, end)
            stop = end if newline < 0 else newline + 1
            line += framer._view[framer._start:stop]
            self._left -= stop - framer._start
            framer._start = stop
        return bytes(line)

    def peek(self, n=0):
        """Bytes already received (at least one unless the pickle is all read), without consuming them."""
        framer = self._framer
        if self._left and framer._end == framer._start:
            self._guard(framer._fill)
        return bytes(framer._view[framer._start:framer._start + min(framer._end - framer._start, self._left)])

    def finish(self):
        """Skip the unread rest of the pickle; raise :class:`ConnectionClosed` if the connection was lost."""
        if self._error is None and self._left:
            junk = memoryview(bytearray(min(self._left, LARGE_BUFFER)))
            try:
                while self._left:
                    n = min(self._left, junk.nbytes)
                    self._framer._read_into(junk[:n])
                    self._left -= n
            except ConnectionClosed as exc:
                self._error = exc
        if self._error is not None:
            raise self._error


#: Socket buffer size on loopback: small enough that bytes the sender copies into the kernel are
#: still in cache when the receiver copies them out (measured faster and steadier than autotuning).
LOOPBACK_BUFFER = 256 * 1024


def configure_socket(sock):
    """Settings for a connected TCP socket: no Nagle delay; on loopback, cache-sized buffers."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = sock.getpeername()[0]
    if peer == "::1" or peer.startswith("127."):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LOOPBACK_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LOOPBACK_BUFFER)


def keepalive(sock, seconds):
    """TCP keepalive probes (and a limit on unacknowledged data) so a vanished peer is noticed in ``seconds``."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle, interval = max(1, int(seconds / 2)), max(1, int(seconds / 6))
    for option, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3),
                          ("TCP_USER_TIMEOUT", int(seconds * 1000))):
        if hasattr(socket, option):  # Linux; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
