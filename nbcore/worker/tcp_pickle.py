"""The tcp-pickle protocol, worker side: connect to the host's TCP listener."""
import socket

from .auth import worker_authenticate
from .channel import SocketChannel
from .framing import configure_socket

PROTOCOL = "tcp-pickle"


def worker_available():
    """Return None: TCP works wherever the worker can reach the host."""
    return None


def worker_connect(address, secret, role):
    """Open an authenticated connection to ``address`` (``host:port``) in ``role``."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
    try:
        configure_socket(sock)
        worker_authenticate(sock, secret, role)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return SocketChannel(sock, PROTOCOL)
