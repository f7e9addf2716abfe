"""What every figure of the bench stands beside: the references (a bare ``multiprocessing.Pipe``, a bare
loopback TCP socket, a memcpy of the same bytes, into private or shared memory) and the timing helpers."""
import mmap
import multiprocessing
import socket
import statistics
import time

from ...worker.framing import configure_socket

#: The worker-side module the measurements call (:mod:`nbcore.worker.bench_targets`).
TARGETS = "nbcore.worker.bench_targets"


def _pipe_echo(connection):
    while True:
        message = connection.recv()
        if message is None:
            break
        connection.send(message)


class PipeReference:
    """A child process echoing over a bare ``multiprocessing.Pipe``."""

    def __init__(self):
        self.connection, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(target=_pipe_echo, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def round_trips(self, count):
        send, recv, out = self.connection.send, self.connection.recv, []
        clock = time.perf_counter
        for _ in range(count):
            t = clock()
            send(1)
            recv()
            out.append(clock() - t)
        return out

    def close(self):
        self.connection.send(None)
        self.process.join(5)


def _socket_peer(port, nbytes):
    """The child of :class:`SocketReference`: sends ``nbytes`` after a ``g``, reads them after a ``p``."""
    sock = socket.create_connection(("127.0.0.1", port))
    configure_socket(sock)
    buffer = memoryview(bytearray(b"\1" * nbytes))
    while True:
        op = sock.recv(1)
        if op == b"g":
            sock.sendall(buffer)
        elif op == b"p":
            _recv_all(sock, buffer)
            sock.sendall(b"k")
        else:
            break


def _recv_all(sock, target):
    pos = 0
    while pos < target.nbytes:
        pos += sock.recv_into(target[pos:], target.nbytes - pos, socket.MSG_WAITALL)


class SocketReference:
    """A child process moving ``nbytes`` through a bare loopback TCP socket, set up as tcp-pickle sets up its
    own (the floor of any protocol over loopback TCP: the kernel copies the bytes in and out)."""

    def __init__(self, nbytes):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(60)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_socket_peer, args=(listener.getsockname()[1], nbytes), daemon=True)
        self.process.start()
        try:
            self.sock = listener.accept()[0]
        finally:
            listener.close()
        self.sock.settimeout(None)
        configure_socket(self.sock)
        self.buffer = memoryview(bytearray(b"\1" * nbytes))

    def to_host(self):
        self.sock.sendall(b"g")
        _recv_all(self.sock, self.buffer)

    def to_peer(self):
        self.send(self.buffer)

    def send(self, data):
        """Send ``data`` (``nbytes`` bytes) to the peer and wait for its answer."""
        self.sock.sendall(b"p")
        self.sock.sendall(data)
        self.sock.recv(1)

    def close(self):
        self.sock.close()
        self.process.join(5)


def timed(fn, count):
    """Seconds of each of ``count`` calls of ``fn``."""
    out = []
    clock = time.perf_counter
    for _ in range(count):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def memcpy_of(frame):
    """A function copying ``frame``'s bytes into preallocated memory (the frame reference)."""
    try:
        import numpy as np

        sources = [np.asarray(memoryview(p)).view(np.uint8).reshape(-1) for p in frame]
        targets = [np.empty_like(s) for s in sources]

        def copy():
            for s, t in zip(sources, targets):
                np.copyto(t, s)
    except ImportError:
        sources = [memoryview(p).cast("B") for p in frame]
        targets = [memoryview(bytearray(s.nbytes)) for s in sources]

        def copy():
            for s, t in zip(sources, targets):
                t[:] = s
    copy()
    return copy


def memcpy_to_shared_of(frame):
    """Like :func:`memcpy_of`, into an anonymous shared mapping touched once (the page size shared memory has)."""
    try:
        import numpy as np
    except ImportError:
        return None
    sources = [np.asarray(memoryview(p)).view(np.uint8).reshape(-1) for p in frame]
    blocks = [mmap.mmap(-1, s.nbytes) for s in sources]
    targets = [np.frombuffer(b, np.uint8) for b in blocks]

    def copy():
        for s, t in zip(sources, targets):
            np.copyto(t, s)
    copy()
    return copy


def median_ms(values):
    """The median of ``values`` (seconds), in milliseconds."""
    return statistics.median(values) * 1e3


def percentile(values, q):
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
