"""The links between host and worker: a unix socket that carries file descriptors, and the doorbell pipes.

The host listens on a unix socket (abstract namespace on Linux, so a container
sharing the host's network namespace reaches it; a private folder elsewhere).
The worker connects, proves it got the offer with a token, and hands over one
end of each of two pipes: messages travel on the pipes (a blocking read is the
doorbell), segment descriptors on the socket.
"""
import array
import os
import socket
import struct
import sys

from nbcore.worker import ConnectionClosed

#: Pipe buffer size asked for (messages larger than this are written in several steps).
PIPE_SIZE = 256 * 1024
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, which Python < 3.10 does not name
_FD_SIZE = array.array("i").itemsize


def listen():
    """Listen on a fresh unguessable address; return ``(socket, address, folder_to_remove)``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    folder = None
    try:
        if sys.platform.startswith("linux"):
            address = "\0nbcore-shm-" + os.urandom(16).hex()
        else:  # no abstract sockets: a private folder (tempfile only here, off the worker's start)
            import tempfile

            folder = tempfile.mkdtemp(prefix="nbcore-shm-")
            address = os.path.join(folder, "s")
        sock.bind(address)
        sock.listen(4)
    except BaseException:
        sock.close()
        if folder:
            import shutil  # here: off the worker's start, like tempfile

            shutil.rmtree(folder, ignore_errors=True)
        raise
    return sock, address, folder


def connect(address, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def pipe():
    """A pipe ``(read_fd, write_fd)`` with a large buffer where the system allows it."""
    read_fd, write_fd = os.pipe()
    if sys.platform.startswith("linux"):
        import fcntl

        try:
            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
    return read_fd, write_fd


def send_fds(sock, data, fds):
    """Send ``data`` (a few bytes) with the descriptors ``fds`` attached."""
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def recv_some_fds(sock, size, max_fds):
    """One receive of at most ``size`` bytes; return ``(data, fds)`` (``data`` empty at end of stream)."""
    flags = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
    data, ancdata, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(max_fds * _FD_SIZE), flags)
    fds = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[:len(payload) - len(payload) % _FD_SIZE])
            fds.extend(received)
    if not flags:
        for fd in fds:
            os.set_inheritable(fd, False)
    return data, fds


def recv_fds(sock, size, max_fds):
    """Receive ``size`` bytes and the descriptors sent with them; return ``(data, fds)``."""
    data = b""
    fds = []
    while len(data) < size:
        chunk, received = recv_some_fds(sock, size - len(data), max_fds)
        fds.extend(received)
        if not chunk:
            for fd in fds:
                os.close(fd)
            raise ConnectionClosed("the peer closed the descriptor socket")
        data += chunk
    return data, fds


def peer_uid(sock):
    """The user id of the process at the other end of a unix socket (``None`` where the system cannot tell)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid
