"""Mutual HMAC challenge run on every new connection before anything is unpickled: the worker's half
(the host's is :mod:`nbcore.plugin.auth`)."""
import hashlib
import hmac
import os

NONCE_BYTES = 32
DIGEST_BYTES = 32
ROLES = {b"M": "main", b"C": "control"}


class AuthenticationError(Exception):
    """The peer does not know the per-worker secret."""


def digest(secret, label, nonce):
    return hmac.new(secret, label + nonce, hashlib.sha256).digest()


def _recv_exact(sock, size):  # worker side: the host answers promptly
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise AuthenticationError("the peer closed the connection during authentication")
        out += chunk
    return bytes(out)


def worker_authenticate(sock, secret, role):
    """Answer the host's challenge and check the host knows the secret too."""
    code = {v: k for k, v in ROLES.items()}[role]
    nonce = _recv_exact(sock, NONCE_BYTES)
    worker_nonce = os.urandom(NONCE_BYTES)
    sock.sendall(code + digest(secret, b"worker" + code, nonce) + worker_nonce)
    if not hmac.compare_digest(_recv_exact(sock, DIGEST_BYTES), digest(secret, b"host", worker_nonce)):
        raise AuthenticationError("the host did not prove it knows the worker secret")
