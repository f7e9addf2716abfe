"""shm-pickle is chosen when both ends can run it, and tcp-pickle is kept (with a logged reason) when not."""
import logging

import pytest

from nbcore.host import launch as host
from nb_shm import ShmPickle

SHM_NAME = "shm-pickle5-buffers"
TCP_NAME = "tcp-pickle5-buffers"


def test_chosen_when_both_sides_have_it(open_env):
    with open_env("python") as env:
        assert env.protocol == SHM_NAME
        assert env.call("shm_targets:stats")["protocol"] == SHM_NAME


def test_chosen_with_a_venv_worker(open_env):
    with open_env("venv") as env:
        assert env.protocol == SHM_NAME
        assert env.call("operator:add", 2, 3) == 5


def test_kept_on_tcp_when_asked(open_env):
    with open_env("python", NBCORE_PROTOCOL="tcp-pickle") as env:
        assert env.protocol == TCP_NAME


def test_kept_on_tcp_when_the_worker_lacks_the_plugin(open_env, monkeypatch, caplog):
    original = host.worker_launch

    def without_shm(*args, **kwargs):
        launch = original(*args, **kwargs)
        entries = launch.variables["NBCORE_WORKER_PROTOCOLS"].split(",")
        launch.variables["NBCORE_WORKER_PROTOCOLS"] = ",".join(e for e in entries if not e.startswith("shm-pickle="))
        return launch

    monkeypatch.setattr(host, "worker_launch", without_shm)
    with caplog.at_level(logging.INFO, logger="nbcore"), open_env("python") as env:
        assert env.protocol == TCP_NAME
    assert "shm-pickle: not installed in the worker" in caplog.text


def test_kept_on_tcp_when_the_worker_has_no_shared_memory(open_env, monkeypatch, caplog, tmp_path):
    # The host side believes it can; the worker (same variables, same process) finds no folder.
    monkeypatch.setattr(ShmPickle, "check_available", lambda self: None)
    with caplog.at_level(logging.INFO, logger="nbcore"), \
            open_env("python", NBCORE_SHM_DIR=tmp_path / "missing") as env:
        assert env.protocol == TCP_NAME
    assert "shm-pickle: unavailable in the worker: no shared memory folder" in caplog.text


def test_skipped_on_the_host_without_shared_memory(open_env, caplog, tmp_path):
    with caplog.at_level(logging.INFO, logger="nbcore"), \
            open_env("venv", NBCORE_SHM_DIR=tmp_path / "missing") as env:
        assert env.protocol == TCP_NAME
    assert "unavailable on the host" in caplog.text


def test_worker_that_cannot_reach_the_socket_declines(open_env, monkeypatch, caplog):
    from nb_shm.worker import links

    def unreachable(address, timeout):
        raise ConnectionRefusedError("no route to the host's socket")

    monkeypatch.setattr(links, "connect", unreachable)
    with caplog.at_level(logging.INFO, logger="nbcore"), open_env("python") as env:
        assert env.protocol == TCP_NAME
        assert env.call("operator:mul", 6, 7) == 42
    assert "the worker declined" in caplog.text


@pytest.mark.parametrize("value", ["", "0"])
def test_copy_variable_off(open_env, value):
    with open_env("python", NBCORE_SHM_COPY=value) as env:
        assert env.connection.channel.copy is False
