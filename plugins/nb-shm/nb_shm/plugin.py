"""The host side of shm-pickle: the protocol provider and its registration hook."""
import hmac
import os
import shutil
import time

from nbcore.plugin import UPGRADE, ProtocolProvider, hookimpl

from . import worker
from .worker import links

ACCEPT_TIMEOUT = 10.0


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
        """Accept the worker's connection: the one that presents the token with two descriptors."""
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the worker did not connect to the shm-pickle socket")
            state.sock.settimeout(remaining)
            conn, _ = state.sock.accept()
            fds = []
            try:
                conn.settimeout(max(0.1, deadline - time.monotonic()))
                token, fds = links.recv_fds(conn, len(state.token), 2)
                conn.settimeout(None)
            except (OSError, EOFError):
                token = b""
            if hmac.compare_digest(token, state.token) and len(fds) == 2:
                return conn, fds
            for fd in fds:
                os.close(fd)
            conn.close()

    def host_abort(self, state):
        state.close()


@hookimpl
def nbcore_register(register):
    register.protocol(ShmPickle())
