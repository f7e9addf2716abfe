"""The host side of shm-pickle: the protocol provider, its offer and the accept of the worker's connection."""
import hmac
import os
import shutil
import time

from nbcore.plugin import ProtocolProvider, UPGRADE, log, readable

from . import worker
from .worker import links

#: How long the host waits for the worker's connection in all.
ACCEPT_TIMEOUT = 10.0
#: How long one connection may take to present the token and descriptors.
HANDSHAKE_TIMEOUT = 2.0


def _size(name):
    value = os.environ.get(name)
    return int(value) if value else None


def _options():
    return {
        "copy": os.environ.get("NBCORE_SHM_COPY", "") not in ("", "0"),
        "segment_size": _size("NBCORE_SHM_SEGMENT_SIZE"),
        "limit": _size("NBCORE_SHM_LIMIT"),
        "spin_us": _size("NBCORE_SHM_SPIN_US"),
    }



class _Offer:
    """What the host prepared for one upgrade: the listening socket, the token, the options."""

    def __init__(self, sock, folder, token, options):
        self.sock = sock
        self.folder = folder
        self.token = token
        self.options = options

    def close(self):
        self.sock.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


class _Handshake:
    """One connection to the offer's socket, read as it arrives: the token so far and the descriptors."""

    def __init__(self, conn, deadline):
        self.conn = conn
        self.deadline = deadline
        self.data = b""
        self.fds = []

    def receive(self, size):
        """Read what is there; true once the token is complete or the connection is done with."""
        try:
            chunk, fds = links.recv_some_fds(self.conn, size - len(self.data), 2)
        except BlockingIOError:
            return False
        except OSError:
            chunk, fds = b"", []
        self.fds.extend(fds)
        self.data += chunk
        return not chunk or len(self.data) >= size

    def reject(self, reason):
        if reason:
            log.warning("shm-pickle: closed a connection to the offer's socket: %s", reason)
        for fd in self.fds:
            os.close(fd)
        self.conn.close()


class ShmPickle(ProtocolProvider):
    """Pickle with out-of-band buffers in shared memory, a pipe as the doorbell.

    Options (host environment variables, sent to the worker with the offer):
    ``NBCORE_SHM_COPY=1`` hands out heap copies instead of views,
    ``NBCORE_SHM_SEGMENT_SIZE`` and ``NBCORE_SHM_LIMIT`` (bytes) size the shared
    memory each side sends from.  ``NBCORE_SHM_DIR`` (each side's own) is where
    segments are created (default ``/dev/shm``).
    """

    name = worker.PROTOCOL
    description = "pickle with out-of-band buffers in shared memory (views, released by GC), pipe doorbell"
    worker_module = "nb_shm.worker"
    roles = frozenset([UPGRADE])
    preference = 50

    def check_available(self):
        return worker.worker_available()

    def host_offer(self, channel):
        sock, address, folder = links.listen()
        state = _Offer(sock, folder, os.urandom(32), _options())
        return state, dict(state.options, address=address, token=state.token)

    def host_complete(self, channel, state, reply):
        try:
            conn, fds = self._accept(state)
        finally:
            state.close()
        to_worker, to_host = fds
        try:
            return worker.make_channel(to_host, to_worker, conn, state.options)
        except BaseException:
            for fd in fds:
                os.close(fd)
            conn.close()
            raise

    def _accept(self, state):
        """Accept the worker's connection: the one that presents the token with two descriptors.

        Every pending connection is served at once and gets :data:`HANDSHAKE_TIMEOUT`, and one
        from another user (root aside) is closed at once: the socket's name is public
        (``/proc/net/unix``), so neither a silent connection nor someone else's may hold up the
        worker's.
        """
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        pending = {}  # socket -> _Handshake
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError("the worker did not connect to the shm-pickle socket")
                for conn in [c for c, shake in pending.items() if shake.deadline <= now]:
                    pending.pop(conn).reject("no token within %.0f s" % HANDSHAKE_TIMEOUT)
                ready = readable([state.sock] + list(pending), min(0.1, deadline - now))
                for sock in ready:
                    if sock is state.sock:
                        self._admit(state.sock, pending)
                        continue
                    shake = pending[sock]
                    if shake.receive(len(state.token)):
                        del pending[sock]
                        if hmac.compare_digest(shake.data, state.token) and len(shake.fds) == 2:
                            sock.settimeout(None)
                            return sock, shake.fds
                        shake.reject("a wrong token or descriptors")
        finally:
            for shake in pending.values():
                shake.reject(None)

    @staticmethod
    def _admit(listener, pending):
        conn, _ = listener.accept()
        uid = links.peer_uid(conn)
        if uid not in (None, os.getuid(), 0):  # root may read this process's memory anyway
            log.warning("shm-pickle: refused a connection from user id %d", uid)
            conn.close()
            return
        conn.setblocking(False)
        pending[conn] = _Handshake(conn, time.monotonic() + HANDSHAKE_TIMEOUT)

    def host_abort(self, state):
        state.close()
