"""The built-in ``tcp-pickle`` protocol: the fallback every worker can reach."""
import logging
import select
import socket
import time

from ..errors import WorkerError
from ..plugins import hookimpl
from ..protocol import Listener, ProtocolProvider
from ..worker.auth import AuthenticationError, host_authenticate
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
        deadline = time.monotonic() + timeout
        channels = {}
        while len(channels) < 2:
            code = worker_exit_code()
            if code is not None:
                raise WorkerError("the worker exited with code %s before connecting" % code)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError("the worker did not connect within %.0f s (NBCORE_CONNECT_TIMEOUT sets the limit)" % timeout)
            ready, _, _ = select.select([self.sock], [], [], min(0.1, remaining))
            if not ready:
                continue
            conn, peer = self.sock.accept()
            try:
                conn.settimeout(AUTH_TIMEOUT)
                role = host_authenticate(conn, secret)
                conn.settimeout(None)
            except (AuthenticationError, OSError) as exc:
                log.warning("rejected a connection from %s: %s", peer, exc)
                conn.close()
                continue
            configure_socket(conn)
            if role in channels:
                conn.close()
                continue
            channels[role] = SocketChannel(conn, PROTOCOL)
        return channels["main"], channels["control"]

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
