"""The built-in ``tcp-pickle`` protocol: the fallback every worker can reach."""
import logging
import select
import socket
import time

from ..errors import WorkerError
from ..plugin.registry import hookimpl
from ..plugin.protocol import Listener, ProtocolProvider
from ..worker.auth import ANSWER_BYTES, AuthenticationError, host_challenge, host_verify
from ..worker.channel import SocketChannel
from ..worker.framing import configure_socket
from ..worker.tcp_pickle import PROTOCOL

log = logging.getLogger("nbcore")
AUTH_TIMEOUT = 5.0


class TcpListener(Listener):
    """Listens on ``bind_host`` at a random port for one worker's two connections."""

    def __init__(self, bind_host):
        family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((bind_host, 0))
        self.sock.listen(8)
        host, port = self.sock.getsockname()[:2]
        self.address = "[%s]:%d" % (host, port) if family == socket.AF_INET6 else "%s:%d" % (host, port)

    def accept(self, secret, timeout, worker_exit_code):
        """Challenge every connection at once, so a silent client cannot hold up the worker."""
        deadline = time.monotonic() + timeout
        channels = {}
        pending = {}  # socket -> (nonce, answer so far, auth deadline, peer)
        try:
            while len(channels) < 2:
                code = worker_exit_code()
                if code is not None:
                    raise WorkerError("the worker exited with code %s before connecting" % code)
                now = time.monotonic()
                if now >= deadline:
                    raise WorkerError("the worker did not connect within %.0f s "
                                      "(NBCORE_CONNECT_TIMEOUT sets the limit)" % timeout)
                for conn in [c for c, state in pending.items() if state[2] <= now]:
                    self._reject(pending, conn, "no answer to the challenge")
                ready, _, _ = select.select([self.sock] + list(pending), [], [], min(0.1, deadline - now))
                for conn in ready:
                    if conn is self.sock:
                        self._challenge(pending)
                    else:
                        self._read_answer(pending, conn, secret, channels)
        finally:
            for conn in pending:
                conn.close()
            if len(channels) < 2:
                for channel in channels.values():
                    channel.close()
        return channels["main"], channels["control"]

    def _challenge(self, pending):
        conn, peer = self.sock.accept()
        nonce = host_challenge()
        try:
            conn.sendall(nonce)
        except OSError:
            conn.close()
            return
        pending[conn] = (nonce, b"", time.monotonic() + AUTH_TIMEOUT, peer)

    def _read_answer(self, pending, conn, secret, channels):
        nonce, answer, auth_deadline, peer = pending[conn]
        try:
            chunk = conn.recv(ANSWER_BYTES - len(answer))
        except OSError as exc:
            self._reject(pending, conn, str(exc))
            return
        if not chunk:
            self._reject(pending, conn, "closed during the challenge")
            return
        answer += chunk
        if len(answer) < ANSWER_BYTES:
            pending[conn] = (nonce, answer, auth_deadline, peer)
            return
        del pending[conn]
        try:
            role, proof = host_verify(secret, nonce, answer)
            conn.sendall(proof)
        except (AuthenticationError, OSError) as exc:
            log.warning("rejected a connection from %s: %s", peer, exc)
            conn.close()
            return
        if role in channels:
            conn.close()
            return
        configure_socket(conn)
        channels[role] = SocketChannel(conn, PROTOCOL)

    @staticmethod
    def _reject(pending, conn, reason):
        log.warning("rejected a connection from %s: %s", pending.pop(conn)[3], reason)
        conn.close()

    def close(self):
        self.sock.close()


class TcpPickle(ProtocolProvider):
    """Pickle over a loopback (or LAN) TCP connection; works wherever the worker can reach the host."""

    name = PROTOCOL
    description = "pickle over TCP, out-of-band buffers at pickle protocol 5 (the fallback)"
    worker_module = "nbcore.worker.tcp_pickle"

    def check_available(self):
        return None

    def listen(self, bind_host):
        return TcpListener(bind_host)

    def host_offer(self, channel):
        if channel.protocol != PROTOCOL:
            raise RuntimeError("tcp-pickle is only a fallback; it cannot replace %s" % channel.protocol)
        return None, {}

    def host_complete(self, channel, state, reply):
        return channel


@hookimpl
def nbcore_register_protocols(register):
    register(TcpPickle())
