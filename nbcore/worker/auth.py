"""Mutual HMAC challenge run on every new connection before anything is unpickled."""
import hashlib
import hmac
import os

NONCE_BYTES = 32
DIGEST_BYTES = 32
ROLES = {b"M": "main", b"C": "control"}


class AuthenticationError(Exception):
    """The peer does not know the per-worker secret."""


def _digest(secret, label, nonce):
    return hmac.new(secret, label + nonce, hashlib.sha256).digest()


def _recv_exact(sock, size):
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise AuthenticationError("the peer closed the connection during authentication")
        out += chunk
    return bytes(out)


def host_authenticate(sock, secret):
    """Challenge a newly accepted worker connection; return its role (``main`` or ``control``)."""
    nonce = os.urandom(NONCE_BYTES)
    sock.sendall(nonce)
    answer = _recv_exact(sock, 1 + DIGEST_BYTES + NONCE_BYTES)
    role, digest, worker_nonce = answer[:1], answer[1:1 + DIGEST_BYTES], answer[1 + DIGEST_BYTES:]
    if role not in ROLES or not hmac.compare_digest(digest, _digest(secret, b"worker" + role, nonce)):
        raise AuthenticationError("a client connected without the worker secret")
    sock.sendall(_digest(secret, b"host", worker_nonce))
    return ROLES[role]


def worker_authenticate(sock, secret, role):
    """Answer the host's challenge and check the host knows the secret too."""
    code = {v: k for k, v in ROLES.items()}[role]
    nonce = _recv_exact(sock, NONCE_BYTES)
    worker_nonce = os.urandom(NONCE_BYTES)
    sock.sendall(code + _digest(secret, b"worker" + code, nonce) + worker_nonce)
    if not hmac.compare_digest(_recv_exact(sock, DIGEST_BYTES), _digest(secret, b"host", worker_nonce)):
        raise AuthenticationError("the host did not prove it knows the worker secret")
