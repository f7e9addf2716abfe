"""Worker lifecycle: dead, silent and crashing workers, strangers on the port, host death, no leaks."""
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

from nbcore import open_backend
from nbcore.plugin import registry as plugins
from nbcore.plugin.backend import BackendProvider, host_environment
from nbcore.plugin.process import SubprocessWorker
from nbcore.errors import WorkerError
from nbcore.builtin.tcp_pickle import TcpPickle
from nbcore.plugin.protocol import ListenAddress
from nbcore.worker import tcp_pickle as tcp_worker
from nbcore.worker.auth import NONCE_BYTES, AuthenticationError
from nbcore.worker.framing import encode_header
from nbcore.testing import read_line, wait_gone
from nbtest import clean_environ, pid_alive, write

NUMPY = {"environments": {"demo": {"packages": ["numpy"]}}}
EMPTY = {"environments": {"demo": {}}}

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


class CommandBackend(BackendProvider):
    """Starts an arbitrary command instead of a worker."""

    def __init__(self, name, argv):
        self.name = name
        self.argv = argv
        self.last = None

    def check_available(self):
        return None

    def install(self, env, progress):
        pass

    def start_worker(self, env, launch):
        self.last = SubprocessWorker(self.argv, env=host_environment(launch.worker_variables()), cwd=launch.cwd, echo=False)
        return self.last


@pytest.fixture
def command_backends(monkeypatch):
    backends = {
        "nbt-sleep": CommandBackend("nbt-sleep", ["sleep", "60"]),
        "nbt-exit": CommandBackend("nbt-exit", [sys.executable, "-c",
                                                "print('nbt-boom first line'); print('nbt-boom last line'); raise SystemExit(7)"]),
    }
    module = types.ModuleType("nbtest_command_backends")

    @plugins.hookimpl
    def nbcore_register(register):
        for backend in backends.values():
            register.backend(backend)

    module.nbcore_register = nbcore_register
    monkeypatch.setattr(plugins, "_registry", plugins.build_registry(plugins=[module], autoload=False))
    return backends


def test_worker_that_never_connects_times_out(command_backends, monkeypatch, workdir):
    monkeypatch.setenv("NBCORE_CONNECT_TIMEOUT", "1")
    with pytest.raises(WorkerError, match=r"did not connect within 1 s \(NBCORE_CONNECT_TIMEOUT"):
        open_backend("demo", config=EMPTY, backend="nbt-sleep")
    assert command_backends["nbt-sleep"].last.poll() is not None, "the silent worker was left running"


def test_worker_that_exits_at_once_reports_its_output(command_backends, workdir):
    with pytest.raises(WorkerError) as info:
        open_backend("demo", config=EMPTY, backend="nbt-exit")
    message = str(info.value)
    assert "exited with code 7 before connecting" in message
    assert "nbt-boom first line" in message and "nbt-boom last line" in message


@pytest.fixture
def venv_env(workdir):
    with open_backend("demo", config=NUMPY, backend="venv", protocol="tcp-pickle") as env:
        yield env


def test_sigkilled_worker_mid_call(venv_env, later):
    pid = venv_env.call("os:getpid")
    later(0.5, os.kill, pid, signal.SIGKILL)
    with pytest.raises(WorkerError, match=r"the worker died \(exit code -9\)"):
        venv_env.call("time:sleep", 30)
    with pytest.raises(WorkerError, match="exit code -9"):
        venv_env.call("operator:add", 1, 2)
    venv_env.close()


def test_worker_killed_while_idle(venv_env):
    pid = venv_env.call("os:getpid")
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid, 5)
    with pytest.raises(WorkerError, match="exit code -9"):
        venv_env.call("operator:add", 1, 2)


def test_worker_exiting_mid_call_shows_its_last_output(venv_env):
    venv_env.call("builtins:print", "nbt-last-words")
    with pytest.raises(WorkerError) as info:
        venv_env.call("os:_exit", 5)
    assert "exit code 5" in str(info.value) and "nbt-last-words" in str(info.value)


CORRUPT_WORKER = '''
import os
import struct
import zlib

from nbcore.worker import allocation
from nbcore.worker.framing import HEADER, MAGIC


def header(pickle_len):
    crc = zlib.crc32(b"", zlib.crc32(struct.pack("<IQ", 0, pickle_len)))
    return HEADER.pack(MAGIC, 0, pickle_len, crc)


def send_garbage():
    allocation._channel.sock.sendall(b"garbage!" * 100)


def claim_huge():
    allocation._channel.sock.sendall(header(1 << 60))


def truncate_and_die():
    allocation._channel.sock.sendall(header(1000) + b"x" * 10)
    os._exit(4)
'''


@pytest.mark.parametrize("function, message", [
    ("send_garbage", "the worker sent a corrupt message (not an nbcore message"),
    ("claim_huge", "the worker sent a corrupt message (message of 1152921504606846976 bytes is larger"),
    ("truncate_and_die", "the worker died (exit code 4)"),
])
def test_corrupt_replies_from_the_worker(venv_env, workdir, function, message):
    write(workdir / "nbt_corrupt.py", CORRUPT_WORKER)
    pid = venv_env.call("os:getpid")
    with pytest.raises(WorkerError) as info:
        venv_env.call("nbt_corrupt:" + function)
    assert message in str(info.value)
    wait_gone(pid, 5)


def interrupt_main_after(later, *delays):
    for delay in delays:
        later(delay, signal.pthread_kill, threading.main_thread().ident, signal.SIGINT)


SLEEPER = '''
import time


def sleep_then_mark(seconds, path):
    time.sleep(seconds)
    with open(path, "w") as f:
        f.write("finished")
'''


def test_ctrl_c_waits_for_a_call_that_ignores_cancel(venv_env, workdir, later):
    write(workdir / "nbt_sleeper.py", SLEEPER)
    marker = workdir / "call-finished"
    interrupt_main_after(later, 0.2)
    with pytest.raises(KeyboardInterrupt):
        venv_env.call("nbt_sleeper:sleep_then_mark", 1, str(marker))
    assert marker.read_text() == "finished", "the host raised before the call it waited for had ended"
    assert venv_env.call("operator:add", 1, 2) == 3


def test_second_ctrl_c_kills_the_worker(venv_env, later):
    pid = venv_env.call("os:getpid")
    interrupt_main_after(later, 0.2, 0.5)
    with pytest.raises(KeyboardInterrupt):
        venv_env.call("time:sleep", 30)
    wait_gone(pid, 5)
    with pytest.raises(WorkerError, match="killed after a second interrupt"):
        venv_env.call("operator:add", 1, 2)


def test_secret_is_not_in_argv(venv_env):
    pid = venv_env.call("os:getpid")
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().split(b"\0")[:-1]
    assert argv[1:] == [b"-c", b"from nbcore.worker.serve import main; main()"]
    assert venv_env.call("os:getenv", "NBCORE_WORKER_SECRET") is None
    inherited = venv_env.call("subprocess:check_output", ["sh", "-c", "echo \"[$NBCORE_WORKER_SECRET]\""])
    assert inherited == b"[]\n", "a process the worker starts must not inherit the secret"


def test_the_secret_opens_nothing_once_the_worker_is_connected(workdir, monkeypatch):
    """The secret stays readable in /proc/PID/environ (docs/protocols.md says so); it must be useless there."""
    listeners = []
    listen = TcpPickle.listen

    def recording_listen(self, where):
        listeners.append(listen(self, where))
        return listeners[-1]

    monkeypatch.setattr(TcpPickle, "listen", recording_listen)
    with open_backend("demo", config={"environments": {"demo": {}}}, backend="venv", protocol="tcp-pickle") as env:
        assert env.call("operator:add", 1, 2) == 3
        host, port = listeners[0].address.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5)


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_close_leaks_nothing(workdir):
    with open_backend("demo", config=NUMPY, backend="venv") as env:  # warm up: staging, imports, caches
        env.call("operator:add", 1, 2)
    fds, threads = open_fds(), set(threading.enumerate())
    for _ in range(3):
        env = open_backend("demo", config=NUMPY, backend="venv", protocol="tcp-pickle")
        pid = env.call("os:getpid")
        process = env.connection.process
        env.close()
        env.close()  # twice is fine
        assert process.poll() == 0, process.output_tail()
        assert "host went away" not in process.output_tail()
        assert not pid_alive(pid)
    assert open_fds() == fds
    assert set(threading.enumerate()) <= threads, "a thread outlived its environment"  # earlier tests' may end
    assert not list(workdir.iterdir()), "files were left in the cwd"


def test_call_after_close_is_a_clear_error(workdir):
    env = open_backend("demo", config=EMPTY, backend="python")
    env.close()
    with pytest.raises(WorkerError, match="closed"):
        env.call("operator:add", 1, 2)


# strangers on the listener's port ------------------------------------------------------

def connect(address):
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def test_unauthenticated_clients_are_rejected(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="nbcore")
    listener = TcpPickle().listen(ListenAddress())
    secret = os.urandom(32)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = pickle.dumps(("x", "call", "os:system", ("touch %s" % marker,), {}, []))
    strangers = []

    def strangers_then_worker():
        # 1: a wrong answer to the challenge
        s = connect(listener.address)
        s.recv(NONCE_BYTES)
        s.sendall(b"M" + os.urandom(64))
        strangers.append(s)
        # 2: a client that skips authentication and sends a request right away
        s = connect(listener.address)
        s.sendall(encode_header(len(evil), []) + evil + pickle.dumps(Evil()))
        strangers.append(s)
        # 3: a client that hangs up at once
        connect(listener.address).close()
        # then the real worker
        worker.update(main=tcp_worker.worker_connect(listener.address, secret, "main"),
                      control=tcp_worker.worker_connect(listener.address, secret, "control"))

    worker = {}
    thread = threading.Thread(target=strangers_then_worker)
    thread.start()
    try:
        main, control = listener.accept(secret, 20, lambda: None)
    finally:
        listener.close()
    thread.join(10)
    for s in strangers:
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass  # only the nonce ever comes; then the host hangs up
        except ConnectionResetError:
            pass
        s.close()
    assert caplog.text.count("rejected a connection") >= 2
    # the real worker's channels work, nothing the strangers sent ever ran
    main.send({"hello": 1})
    assert worker["main"].recv() == {"hello": 1}
    assert not marker.exists()
    for channel in (main, control, worker["main"], worker["control"]):
        channel.close()
    with pytest.raises(OSError):
        connect(listener.address)


def test_a_silent_client_does_not_delay_the_worker(monkeypatch):
    from nbcore.builtin import tcp_pickle

    # The silent client's challenge outlasts the accept deadline: waiting on it at all fails the accept.
    monkeypatch.setattr(tcp_pickle, "AUTH_TIMEOUT", 60.0)
    listener = TcpPickle().listen(ListenAddress())
    secret = os.urandom(32)
    silent = connect(listener.address)
    worker = {}

    def connect_worker():
        time.sleep(0.1)
        worker.update(main=tcp_worker.worker_connect(listener.address, secret, "main"),
                      control=tcp_worker.worker_connect(listener.address, secret, "control"))

    thread = threading.Thread(target=connect_worker)
    thread.start()
    try:
        channels = listener.accept(secret, 20, lambda: None)
    finally:
        listener.close()
        thread.join(10)
        silent.close()
    for channel in list(channels) + list(worker.values()):
        channel.close()
    assert set(worker) == {"main", "control"}


def test_worker_rejects_a_host_without_the_secret():
    server = socket.create_server(("127.0.0.1", 0))

    def fake_host():
        conn, _ = server.accept()
        conn.sendall(os.urandom(NONCE_BYTES))
        conn.recv(65)
        conn.sendall(os.urandom(32))
        time.sleep(0.5)
        conn.close()

    thread = threading.Thread(target=fake_host)
    thread.start()
    host, port = server.getsockname()
    with pytest.raises(AuthenticationError, match="did not prove"):
        tcp_worker.worker_connect("%s:%d" % (host, port), os.urandom(32), "main")
    thread.join()
    server.close()


# the host dies ---------------------------------------------------------------------------

HOST_SCRIPT = '''
import sys, time
from nbcore import open_backend
env = open_backend("demo", config={"environments": {"demo": {"packages": ["numpy"]}}}, backend="venv")
print(env.call("os:getpid"), flush=True)
if sys.argv[1] == "busy":
    env.call("time:sleep", 60)
else:
    time.sleep(60)
'''


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_worker_exits_when_the_host_dies(tmp_path, state):
    script = write(tmp_path / "host.py", HOST_SCRIPT)
    host = subprocess.Popen([sys.executable, str(script), state], cwd=str(tmp_path), env=clean_environ(),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = read_line(host.stdout)
        assert line.strip().isdigit(), "the host did not start its worker"
        pid = int(line)
        assert pid_alive(pid)
        time.sleep(0.3)
        host.kill()
        host.wait()
        wait_gone(pid, 5)
    finally:
        host.kill()
        host.wait()


def test_a_crash_of_the_in_process_worker_loop_is_an_error_not_a_hang(workdir, monkeypatch):
    from nbcore.worker import rpc

    def crashing_run(self, call_id, op, target, args, kwargs):
        raise RuntimeError("the loop broke")

    with open_backend("demo", config={"environments": {"demo": {}}}, backend="python") as env:
        monkeypatch.setattr(rpc.Worker, "_run", crashing_run)
        with pytest.raises(WorkerError, match="the loop broke"):
            env.call("operator:add", 1, 2)
