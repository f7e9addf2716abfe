"""The host's half of the mutual challenge (keyed BLAKE2b; the worker's half is :mod:`nbcore.worker.auth`), for
fallback protocols: challenge every accepted connection before reading anything else from it."""
import hmac
import os

from ..worker.auth import DIGEST_BYTES, NONCE_BYTES, ROLES, AuthenticationError, digest

__all__ = ["ANSWER_BYTES", "AuthenticationError", "host_challenge", "host_verify"]

#: Bytes of the worker's answer to the host's challenge.
ANSWER_BYTES = 1 + DIGEST_BYTES + NONCE_BYTES


def host_challenge():
    """A fresh nonce for the host to send to a newly accepted connection."""
    return os.urandom(NONCE_BYTES)


def host_verify(secret, nonce, answer):
    """Check the worker's ``answer`` to ``nonce``; return ``(role, proof)``, the proof going back to the worker."""
    role, proof, worker_nonce = answer[:1], answer[1:1 + DIGEST_BYTES], answer[1 + DIGEST_BYTES:]
    if role not in ROLES or not hmac.compare_digest(proof, digest(secret, b"worker" + role, nonce)):
        raise AuthenticationError("a client connected without the worker secret")
    return ROLES[role], digest(secret, b"host", worker_nonce)


