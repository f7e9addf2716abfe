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


def _recv_exact(sock, size):  # worker side: the host answers promptly
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise AuthenticationError("the peer closed the connection during authentication")
        out += chunk
    return bytes(out)


#: Bytes of the worker's answer to the host's challenge.
ANSWER_BYTES = 1 + DIGEST_BYTES + NONCE_BYTES


def host_challenge():
    """A fresh nonce for the host to send to a newly accepted connection."""
    return os.urandom(NONCE_BYTES)


def host_verify(secret, nonce, answer):
    """Check the worker's ``answer`` to ``nonce``; return ``(role, proof)``, the proof going back to the worker."""
    role, digest, worker_nonce = answer[:1], answer[1:1 + DIGEST_BYTES], answer[1 + DIGEST_BYTES:]
    if role not in ROLES or not hmac.compare_digest(digest, _digest(secret, b"worker" + role, nonce)):
        raise AuthenticationError("a client connected without the worker secret")
    return ROLES[role], _digest(secret, b"host", worker_nonce)


def worker_authenticate(sock, secret, role):
    """Answer the host's challenge and check the host knows the secret too."""
    code = {v: k for k, v in ROLES.items()}[role]
    nonce = _recv_exact(sock, NONCE_BYTES)
    worker_nonce = os.urandom(NONCE_BYTES)
    sock.sendall(code + _digest(secret, b"worker" + code, nonce) + worker_nonce)
    if not hmac.compare_digest(_recv_exact(sock, DIGEST_BYTES), _digest(secret, b"host", worker_nonce)):
        raise AuthenticationError("the host did not prove it knows the worker secret")
