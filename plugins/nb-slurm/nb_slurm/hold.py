"""``python -m nb_slurm.hold``: the batch script of an environment's allocation, run on its first node.

Standard library only.  It connects back to the host at ``NBCORE_SLURM_HOLD``
(``HOST:PORT:TOKEN``), says which node it runs on, and then only waits: when the
connection closes (the host closed the environment, was interrupted or died) or
falls silent for ``NBCORE_KEEPALIVE`` seconds (the host's machine vanished), it
exits, the job ends, and Slurm ends every step of it with all their processes.
"""
import os
import socket
import sys

HOLD_VARIABLE = "NBCORE_SLURM_HOLD"


def keepalive(sock, seconds):
    """TCP keepalive probes, so a host that vanished without closing the connection is noticed in ``seconds``."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    interval = max(1, int(seconds) // 4)
    for name, value in (("TCP_KEEPIDLE", interval), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", int(seconds * 1000))):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def main():
    host, port, token = os.environ.pop(HOLD_VARIABLE).rsplit(":", 2)
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
    except OSError as exc:
        sys.stderr.write("nb_slurm.hold: cannot reach the host at %s:%s: %s\n" % (host, port, exc))
        return 1
    keepalive(sock, float(os.environ.get("NBCORE_KEEPALIVE") or 60))
    sock.sendall(("%s %s\n" % (token, node)).encode())
    sock.settimeout(None)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
