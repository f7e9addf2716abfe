"""The shm-pickle protocol, worker side: stdlib only, injected by the host into every environment.

The upgrade: the host offers a unix socket address and a token; the worker
connects, sends the token with one end of each of two pipes, and both sides
wrap their ends in a :class:`ShmChannel`.
"""
import os
import socket
import sys

from . import links, segments
from .channel import PROTOCOL, ShmChannel

__all__ = ["PROTOCOL", "ShmChannel", "worker_accept_offer", "worker_available"]

CONNECT_TIMEOUT = 10.0
#: Microseconds a side polls for the next message before blocking (``NBCORE_SHM_SPIN_US`` on the host).
DEFAULT_SPIN_US = 200


def worker_available():
    """Return None when this process can run shm-pickle, else the reason."""
    if sys.version_info < (3, 8):
        return "needs Python 3.8+ (pickle protocol 5), this is %d.%d" % sys.version_info[:2]
    if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "SCM_RIGHTS"):
        return "no unix sockets with descriptor passing on %s" % sys.platform
    return segments.probe(segments.shm_dir())


def make_channel(read_fd, write_fd, sock, offer):
    """Wrap this side's ends in a channel configured by the host's ``offer``."""
    directory = segments.shm_dir()
    limit = offer.get("limit") or segments.capacity(directory) // segments.LIMIT_SHARE
    segment_size = offer.get("segment_size") or segments.SEGMENT_SIZE
    spin_us = offer.get("spin_us")
    spin = (DEFAULT_SPIN_US if spin_us is None else spin_us) * 1e-6 if _cpus() > 1 else 0.0
    return ShmChannel(read_fd, write_fd, sock, directory, segment_size, limit, bool(offer.get("copy")), spin)


def _cpus():
    """CPUs this process may run on (spinning on a single CPU only delays the peer)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_accept_offer(channel, offer):
    """Connect to the host's socket, hand over the pipe ends; return ``(channel, reply)``."""
    sock = links.connect(offer["address"], CONNECT_TIMEOUT)
    fds = []
    try:
        to_worker = links.pipe()
        fds.extend(to_worker)
        to_host = links.pipe()
        fds.extend(to_host)
        links.send_fds(sock, offer["token"], [to_worker[1], to_host[0]])
        sock.settimeout(None)
        upgraded = make_channel(to_worker[0], to_host[1], sock, offer)
    except BaseException:
        for fd in fds:
            os.close(fd)
        sock.close()
        raise
    os.close(to_worker[1])
    os.close(to_host[0])
    return upgraded, {}
