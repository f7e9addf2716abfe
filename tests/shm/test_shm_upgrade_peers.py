"""The shm upgrade's socket has a public name: strangers connecting to it neither stall nor hijack the upgrade."""
import logging
import os
import select
import socket

import pytest

from nb_shm import ShmPickle
from nb_shm import protocol as shm_protocol
from nb_shm.worker import links

SHM_NAME = "shm-pickle5-buffers"
NOBODY = 65534


@pytest.fixture
def offers(monkeypatch):
    """``offers(action)``: run ``action(offer)`` on every offer the host makes, before the worker sees it."""
    original = ShmPickle.host_offer

    def install(action):
        def host_offer(self, channel):
            state, offer = original(self, channel)
            action(offer)
            return state, offer

        monkeypatch.setattr(ShmPickle, "host_offer", host_offer)

    return install


def test_peer_uid_of_a_unix_socket():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert links.peer_uid(left) == os.getuid()


def test_silent_connector_does_not_hold_up_the_upgrade(open_env, offers, monkeypatch):
    # Both limits far beyond the test's patience: waiting on the silent connection at all
    # would run out the whole deadline and leave the pair on tcp-pickle.
    monkeypatch.setattr(shm_protocol, "ACCEPT_TIMEOUT", 60.0)
    monkeypatch.setattr(shm_protocol, "HANDSHAKE_TIMEOUT", 60.0, raising=False)
    silent = []
    offers(lambda offer: silent.append(links.connect(offer["address"], 5.0)))
    try:
        with open_env("python") as env:
            assert env.protocol == SHM_NAME
            assert env.call("shm_targets:stats")["protocol"] == SHM_NAME
        assert len(silent) == 1
    finally:
        for sock in silent:
            sock.close()


def _connect_as_nobody(address, token):
    """Fork a child that, as user ``nobody``, connects first and presents the right token.

    Return ``(pid, status_fd)``: the child exits 0 once the host closed its connection, 1 if
    the host kept it."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.close(ready_r)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock = links.connect(address, 5.0)
            decoy_r, decoy_w = links.pipe()
            links.send_fds(sock, token, [decoy_w, decoy_r])
            os.write(ready_w, b"1")
            sock.settimeout(10.0)
            code = 0 if sock.recv(1) == b"" else 2
        except ConnectionResetError:  # closed with the token unread
            code = 0
        except socket.timeout:
            code = 1
        finally:
            os._exit(code)
    os.close(ready_w)
    return pid, ready_r


def _exit_code(pid, timeout):
    """The child's exit code, waiting at most ``timeout`` seconds (then it is killed)."""
    for _ in range(int(timeout * 10)):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        select.select([], [], [], 0.1)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to connect as another user")
def test_connection_from_another_user_is_refused(open_env, offers, caplog):
    children = []

    def intrude(offer):
        pid, ready = _connect_as_nobody(offer["address"], offer["token"])
        children.append(pid)
        try:
            readable, _, _ = select.select([ready], [], [], 10.0)
            assert readable and os.read(ready, 1) == b"1", "the other user's connection was not made"
        finally:
            os.close(ready)

    offers(intrude)
    try:
        with caplog.at_level(logging.WARNING, logger="nbcore"), open_env("python") as env:
            assert env.protocol == SHM_NAME
            assert env.call("operator:add", 2, 3) == 5
    finally:
        codes = [_exit_code(pid, 15.0) for pid in children]
    assert codes == [0], "the host kept the other user's connection"
    assert "refused a connection from user id %d" % NOBODY in caplog.text
