"""Mutual challenge run on every new connection before anything is unpickled: the worker's half
(the host's is :mod:`nbcore.plugin.auth`).

Each side proves it knows the per-worker secret with a keyed BLAKE2b MAC of the
other side's nonce.  BLAKE2b comes from the builtin ``_blake2`` module where there
is one: ``hashlib`` (and ``hmac``, which imports it) loads OpenSSL, about 1.3 ms of
a worker's start.
"""
import os

try:
    from _blake2 import blake2b
except ImportError:  # a Python without CPython's module
    from hashlib import blake2b
try:
    from _operator import _compare_digest as compare_digest
except ImportError:
    from hmac import compare_digest

NONCE_BYTES = 32
DIGEST_BYTES = 32
ROLES = {b"M": "main", b"C": "control"}


class AuthenticationError(Exception):
    """The peer does not know the per-worker secret."""


def digest(secret, label, nonce):
    """The MAC of ``label + nonce`` keyed with ``secret`` (at most 64 bytes)."""
    return blake2b(label + nonce, digest_size=DIGEST_BYTES, key=secret).digest()


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
    if not compare_digest(_recv_exact(sock, DIGEST_BYTES), digest(secret, b"host", worker_nonce)):
        raise AuthenticationError("the host did not prove it knows the worker secret")
