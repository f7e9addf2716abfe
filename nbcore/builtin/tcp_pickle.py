"""The built-in ``tcp-pickle`` protocol: the fallback every worker can reach."""
import socket
import time

from ..log import log
from ..errors import WorkerError
from ..plugin.registry import hookimpl
from ..plugin.protocol import FALLBACK, Listener, ListenAddress, ProtocolProvider, readable
from ..plugin.auth import ANSWER_BYTES, AuthenticationError, host_challenge, host_verify
from ..worker.channel import SocketChannel
from ..worker.framing import configure_socket
from ..worker.tcp_pickle import PROTOCOL

AUTH_TIMEOUT = 5.0


class TcpListener(Listener):
    """Listens at a :class:`ListenAddress` (any free port, or the first free one of its range) for one
    worker's two connections."""

    def __init__(self, where: ListenAddress):
        family = socket.AF_INET6 if ":" in where.bind else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            port = self._bind(where)
            self.sock.listen(8)
        except BaseException:
            self.sock.close()
            raise
        host = where.advertised_host()
        self.address = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)

    def _bind(self, where):
        for port in where.candidate_ports():
            try:
                self.sock.bind((where.bind, port))
                return self.sock.getsockname()[1]
            except OSError as exc:
                error = exc
        raise WorkerError("cannot listen for the worker on %s port %s: %s (NBCORE_BIND, NBCORE_PORTS)"
                          % (where.bind, "%d-%d" % where.ports if where.ports else "any", error.strerror))

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
                ready = readable([self.sock] + list(pending), min(0.1, deadline - now))
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
    roles = frozenset([FALLBACK])

    def check_available(self):
        return None

    def listen(self, where):
        return TcpListener(where)


@hookimpl
def nbcore_register(register):
    register.protocol(TcpPickle())
