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
    sock = _connect(host.strip("[]"), int(port))
    try:
        configure_socket(sock)
        worker_authenticate(sock, secret, role)
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return SocketChannel(sock, PROTOCOL)


def _connect(host, port):
    """A TCP socket connected to ``host``; an IP address is connected to without a name lookup, which would
    import the idna codec on the worker's start."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(30)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=30)
