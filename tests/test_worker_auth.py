"""The challenge on every new connection: a keyed BLAKE2b MAC each way, which the worker computes without
loading OpenSSL (hashlib, hmac) and the host computes alike."""
import hashlib
import os
import socket
import subprocess
import sys
import threading

import pytest

from nbcore.plugin.auth import ANSWER_BYTES, host_challenge, host_verify
from nbcore.worker.auth import DIGEST_BYTES, AuthenticationError, worker_authenticate


def blake2b_mac(secret, message):
    return hashlib.blake2b(message, key=secret, digest_size=DIGEST_BYTES).digest()


def run_worker_half(sock, secret, role):
    """``worker_authenticate`` in a thread; returns a dict that gets its ``error`` (None when it passed)."""
    outcome = {}

    def run():
        try:
            worker_authenticate(sock, secret, role)
            outcome["error"] = None
        except AuthenticationError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    outcome["thread"] = thread
    return outcome


@pytest.fixture
def pair():
    host, worker = socket.socketpair()
    for s in (host, worker):
        s.settimeout(10)
    yield host, worker
    host.close()
    worker.close()


def recv_exact(sock, size):
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


@pytest.mark.parametrize("role, code", [("main", b"M"), ("control", b"C")])
def test_both_sides_prove_the_secret_with_keyed_blake2b(pair, role, code):
    host, worker = pair
    secret, nonce = os.urandom(32), host_challenge()
    outcome = run_worker_half(worker, secret, role)
    host.sendall(nonce)
    answer = recv_exact(host, ANSWER_BYTES)
    assert answer[:1 + DIGEST_BYTES] == code + blake2b_mac(secret, b"worker" + code + nonce)
    seen_role, proof = host_verify(secret, nonce, answer)
    assert seen_role == role and proof == blake2b_mac(secret, b"host" + answer[1 + DIGEST_BYTES:])
    host.sendall(proof)
    outcome["thread"].join(10)
    assert outcome["error"] is None


def test_each_side_refuses_a_peer_without_the_secret(pair):
    host, worker = pair
    secret, nonce = os.urandom(32), host_challenge()
    outcome = run_worker_half(worker, secret, "main")
    host.sendall(nonce)
    answer = recv_exact(host, ANSWER_BYTES)
    with pytest.raises(AuthenticationError, match="without the worker secret"):
        host_verify(os.urandom(32), nonce, answer)
    host.sendall(os.urandom(DIGEST_BYTES))  # a host without the secret cannot answer the worker's nonce
    outcome["thread"].join(10)
    assert "did not prove" in str(outcome["error"])


def test_without_the_builtin_modules_the_worker_uses_hashlib_and_hmac():
    """A Python without CPython's ``_blake2`` or ``_operator._compare_digest`` gets the same MAC from hashlib and
    hmac."""
    probe = ("import hashlib, hmac, sys; sys.modules['_blake2'] = None; sys.modules['_operator'] = None\n"
             "from nbcore.worker import auth\n"
             "key, nonce = b'k' * 32, b'n' * 32\n"
             "expected = hashlib.blake2b(b'host' + nonce, key=key, digest_size=32).digest()\n"
             "print(auth.blake2b is hashlib.blake2b, auth.compare_digest is hmac.compare_digest,\n"
             "      auth.digest(key, b'host', nonce) == expected)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True", "True"], result.stderr
