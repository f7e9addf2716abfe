"""RPC failures the worker and the connection must survive: results and exceptions that do not pickle,
results the host cannot rebuild, close() against stuck calls and workers, SystemExit in the worker.

Runs on the in-process ``python`` backend and on ``venv`` (a separate process: there the host lacks
what only the worker has).
"""
import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import traceback

from pathlib import Path

import pytest

from nbcore.errors import RemoteError, RemoteTraceback, ResultError, WorkerError
from nbcore.host.connection import RemoteObject
from nbcore.worker import rpc
from nbcore.worker.channel import DecodeError, EncodeError, SocketChannel
from nbcore.worker.framing import ProtocolError

from nbcore.testing import wait_gone, wait_until
from nbtest import RPC_TEST_FUNCTIONS, clean_environ, open_test_env, run_nbcore, write

MODULE = "nbt_failures_mod"
#: The host has the module too (as a project would).
HOST_IMPORTS_MODULE = True
CONFIG = {"environments": {"demo": {"packages": ["numpy"]}}}

SOURCE = RPC_TEST_FUNCTIONS + '''
import sys
import threading
import time
import types
import weakref

from nbcore.worker import is_cancelled

_refs = []


class RefusesPickling:
    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")

    def hello(self):
        return "hello from the worker"


def refuses_pickling():
    return RefusesPickling()


def deeply_nested(depth):
    nested = []
    for _ in range(depth):
        nested = [nested]
    return nested


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("__str__ fails")


def raise_unprintable():
    raise UnprintableError("detail")


class UnpicklableUnprintableError(UnprintableError):
    def __reduce__(self):
        raise RuntimeError("__reduce__ fails")


def raise_unpicklable_unprintable():
    raise UnpicklableUnprintableError()


def read_value(obj):
    return obj.value


_THING = """
class Thing:
    def __init__(self, value):
        self.value = value

    def double(self):
        return 2 * self.value
"""


def worker_only_module_thing(value):
    """An instance of a class from a module that exists only in the worker."""
    module = sys.modules.get("nbt_worker_only")
    if module is None:
        module = types.ModuleType("nbt_worker_only")
        exec(_THING, module.__dict__)
        sys.modules["nbt_worker_only"] = module
    return module.Thing(value)


def worker_only_attribute_thing(value):
    """An instance of a class this module has only in the worker (added at run time)."""
    cls = globals().get("AddedThing")
    if cls is None:
        namespace = {"__name__": __name__}
        exec(_THING.replace("Thing", "AddedThing"), namespace)
        cls = globals()["AddedThing"] = namespace["AddedThing"]
    return cls(value)


def worker_only_stream(n):
    for i in range(n):
        yield worker_only_module_thing(i)


def _rebuild_only_in(pid):
    if os.getpid() != pid:
        raise ValueError("this object rebuilds only in process %d" % pid)
    return "rebuilt"


class RebuildsOnlyHere:
    def __reduce__(self):
        return _rebuild_only_in, (os.getpid(),)


def rebuilds_only_here():
    return RebuildsOnlyHere()


def tracked_set():
    result = {1, 2, 3}
    _refs.append(weakref.ref(result))
    return result


def tracked_alive():
    return _refs[-1]() is not None


def sleep_forever(started):
    open(started, "w").close()
    while True:
        time.sleep(1)


def outlive_shutdown():
    threading.Thread(target=time.sleep, args=(3600,), name="nbt-keeps-the-worker-alive").start()
    return os.getpid()


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


def raise_generator_exit():
    raise GeneratorExit


def interrupt_when_cancelled(timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_cancelled():
            raise KeyboardInterrupt
        time.sleep(0.01)
    return "timeout"
'''


class HostOnly:
    """A class the worker cannot import (it lives in this test module)."""

    def __init__(self, value):
        self.value = value


def open_demo(backend):
    return open_test_env("demo", CONFIG, backend)


@pytest.fixture(scope="module", params=["python", "venv"])
def env(request, nbcore_home, worker_module):
    with open_demo(request.param) as remote_env:
        yield remote_env


@pytest.fixture(scope="module")
def venv_env(nbcore_home, worker_module):
    with open_demo("venv") as remote_env:
        yield remote_env


@pytest.fixture
def fresh_venv_env(nbcore_home, worker_module):
    """A venv worker of this test alone (the test closes it)."""
    remote_env = open_demo("venv")
    yield remote_env
    remote_env.close()


def f(name):
    return "%s:%s" % (MODULE, name)


# the channel contract -------------------------------------------------------------------------

@pytest.fixture(params=[2, 5])
def channel_pair(request):
    a, b = socket.socketpair()
    left, right = SocketChannel(a, "test"), SocketChannel(b, "test")
    left.pickle_protocol = right.pickle_protocol = request.param
    yield left, right
    left.close()
    right.close()


class RefusesPickling:
    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")


def test_channel_send_that_fails_to_pickle_sends_nothing(channel_pair):
    left, right = channel_pair
    with pytest.raises(EncodeError) as info:
        left.send([bytearray(1 << 20), RefusesPickling()])
    assert isinstance(info.value.error, RuntimeError)
    left.send("next")
    assert right.recv() == "next"


def test_channel_recv_that_fails_to_unpickle_consumes_the_frame(channel_pair):
    left, right = channel_pair
    missing = pickle.dumps(HostOnly(1), 0).replace(__name__.encode(), b"nbt_no_such_module")
    left._framer.send_message(missing, ())
    left.send("next")
    with pytest.raises(DecodeError) as info:
        right.recv()
    assert isinstance(info.value.error, ModuleNotFoundError)
    assert right.recv() == "next"
    left.sock.sendall(b"garbage, not a frame" * 4)
    with pytest.raises(ProtocolError):
        right.recv()


# 1. results and exceptions that do not pickle --------------------------------------------------

class UnprintableMeta(type):
    @property
    def __module__(cls):
        raise RuntimeError("no module name")


class OddError(Exception, metaclass=UnprintableMeta):
    def __str__(self):
        raise RuntimeError("no str")


def test_describe_error_never_raises(monkeypatch):
    try:
        raise OddError("detail")
    except OddError as exc:
        error = exc
    pickled, type_name, message, text = rpc.describe_error(error)
    assert pickled is None, "an exception without a message is not rebuilt on the host"
    assert type_name == "OddError" and message == "OddError('detail')"
    assert "test_describe_error_never_raises" in text

    def broken(*args, **kwargs):
        raise RecursionError("formatting failed")

    monkeypatch.setattr(traceback, "format_exception", broken)
    _, _, _, text = rpc.describe_error(error)
    assert "test_describe_error_never_raises" in text and text.endswith("OddError: OddError('detail')\n")
    monkeypatch.setattr(traceback, "format_tb", broken)
    assert rpc.describe_error(error)[3] == "OddError: OddError('detail')\n"


def test_result_whose_reduce_raises_stays_remote(env):
    pid = env.call(f("pid"))
    result = env.call(f("refuses_pickling"))
    assert isinstance(result, RemoteObject) and "RefusesPickling" in repr(result)
    assert result.hello() == "hello from the worker"
    assert env.call(f("pid")) == pid, "the worker survived"


def test_deeply_nested_result_stays_remote(env):
    pid = env.call(f("pid"))
    result = env.call(f("deeply_nested"), 100000)
    assert isinstance(result, RemoteObject) and "list" in repr(result)
    del result
    assert env.call(f("pid")) == pid, "the worker survived"


@pytest.mark.parametrize("function", ["raise_unprintable", "raise_unpicklable_unprintable"])
def test_exception_whose_str_raises_is_a_remote_error(env, function):
    pid = env.call(f("pid"))
    with pytest.raises(RemoteError) as info:
        env.call(f(function))
    assert info.value.type_name.endswith("UnprintableError")
    assert isinstance(info.value.__cause__, RemoteTraceback) and function in info.value.__cause__.text
    assert env.call(f("pid")) == pid, "the worker survived"


def test_unpicklable_argument_raises_on_the_host_and_keeps_the_connection(env):
    with pytest.raises(TypeError):
        env.call(f("add"), threading.Lock())
    assert env.call(f("add"), 1, 2) == 3


def test_argument_the_worker_cannot_rebuild_is_an_error_not_a_crash(venv_env):
    pid = venv_env.call(f("pid"))
    with pytest.raises(ModuleNotFoundError) as info:
        venv_env.call(f("read_value"), HostOnly(3))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    message = str(info.value)
    assert message.startswith("the environment (Python %d.%d." % sys.version_info[:2]) and "\n" not in message
    assert " cannot rebuild an argument of type %s from the host (Python %d.%d." % (
        HostOnly.__module__ + ".HostOnly", *sys.version_info[:2]) in message, message
    assert message.endswith(": No module named '%s'" % HostOnly.__module__), message
    assert venv_env.call(f("pid")) == pid, "the worker survived"
    assert venv_env.call(f("add"), 1, 2) == 3


def test_objects_released_with_a_request_the_worker_cannot_read_are_released_with_the_next(venv_env):
    before = venv_env.call(f("live_objects"))
    thing = venv_env.call(f("worker_only_module_thing"), 1)
    assert venv_env.call(f("live_objects")) == before + 1
    del thing
    gc.collect()  # its id now rides on the next request, which the worker cannot unpickle
    with pytest.raises(ModuleNotFoundError):
        venv_env.call(f("read_value"), HostOnly(3))
    assert venv_env.call(f("live_objects")) == before, "the worker kept the released object"


# 2. results the host cannot rebuild -----------------------------------------------------------

@pytest.mark.parametrize("function, type_name", [
    ("worker_only_module_thing", "nbt_worker_only.Thing"),
    ("worker_only_attribute_thing", MODULE + ".AddedThing"),
])
def test_result_the_host_cannot_import_comes_back_as_a_proxy(venv_env, function, type_name):
    before = venv_env.call(f("live_objects"))
    thing = venv_env.call(f(function), 21)
    assert isinstance(thing, RemoteObject) and type_name in repr(thing)
    assert thing.double() == 42 and thing.value == 21
    assert venv_env.call(f("read_value"), thing) == 21, "the proxy hands the worker the real object"
    assert venv_env.call(f("live_objects")) == before + 1
    del thing
    gc.collect()
    assert venv_env.call(f("live_objects")) == before


def test_stream_items_the_host_cannot_import_come_back_as_proxies(venv_env):
    items = list(venv_env.call(f("worker_only_stream"), 3))
    assert all(isinstance(item, RemoteObject) for item in items)
    assert [item.double() for item in items] == [0, 2, 4]


def test_result_that_fails_to_rebuild_raises_result_error(venv_env):
    before = venv_env.call(f("live_objects"))
    with pytest.raises(ResultError) as info:
        venv_env.call(f("rebuilds_only_here"))
    message = str(info.value)
    assert MODULE + ".RebuildsOnlyHere" in message and "ValueError: this object rebuilds only in process" in message
    assert "return plain types" in message and "env.remote" in message
    assert venv_env.call(f("add"), 1, 2) == 3, "the connection stays usable"
    assert venv_env.call(f("live_objects")) == before, "the worker dropped the object"


def test_worker_holds_the_last_result_only_until_the_next_request(env):
    assert env.call(f("tracked_set")) == {1, 2, 3}
    assert env.call(f("tracked_alive")) is False


def test_numpy_result_on_a_host_without_numpy(nbcore_home, worker_module):
    script = textwrap.dedent('''
        import sys
        sys.modules["numpy"] = None  # this host has no numpy
        from nbcore import open_backend
        with open_backend("demo", config=%r, backend="venv", protocol="tcp-pickle") as env:
            array = env.call("numpy:arange", 3)
            print(repr(array))
            print(array.tolist())
    ''' % (CONFIG,))
    result = subprocess.run([sys.executable, "-c", script], cwd=str(worker_module), env=clean_environ(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shown, values = result.stdout.splitlines()
    assert shown.startswith("<remote numpy.ndarray #") and values == "[0, 1, 2]"


def test_cli_prints_one_line_for_a_result_that_fails_to_rebuild(worker_module):
    write(worker_module / "nbcore.yaml", "environments:\n  demo: {packages: [numpy]}\n")
    result = run_nbcore("call", "demo", f("rebuilds_only_here"), "--backend", "venv", cwd=worker_module)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("nbcore: error: the host (Python %d.%d." % sys.version_info[:2])
    assert "cannot rebuild the result of type %s.RebuildsOnlyHere from the environment (Python " % MODULE in result.stderr


# 3. close() is bounded ------------------------------------------------------------------------

def run_in_thread(function, *args):
    """Start ``function(*args)`` in a daemon thread; return the thread and a dict that gets its outcome."""
    outcome = {}

    def run():
        try:
            outcome["result"] = function(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_close_stops_a_call_running_in_another_thread(fresh_venv_env, tmp_path):
    pid = fresh_venv_env.call(f("pid"))
    started = str(tmp_path / "started")
    caller, outcome = run_in_thread(fresh_venv_env.call, f("sleep_forever"), started)
    wait_until(Path(started).exists, 60, "%s to appear" % started)
    fresh_venv_env.connection.shutdown_grace = 0.5
    closer, _ = run_in_thread(fresh_venv_env.close)
    closer.join(30)
    assert not closer.is_alive(), "close() waits for the running call"
    wait_gone(pid)
    caller.join(30)
    assert not caller.is_alive()
    assert isinstance(outcome.get("error"), WorkerError), outcome
    assert "closed during the call" in str(outcome["error"])


def test_close_kills_a_worker_that_ignores_shutdown(fresh_venv_env):
    pid = fresh_venv_env.call(f("outlive_shutdown"))
    fresh_venv_env.connection.shutdown_grace = 0.5
    closer, _ = run_in_thread(fresh_venv_env.close)
    closer.join(30)
    assert not closer.is_alive()
    wait_gone(pid)


def test_interpreter_exit_with_a_stuck_call_leaves_no_worker(nbcore_home, worker_module, tmp_path):
    started = str(tmp_path / "started")
    script = textwrap.dedent('''
        import threading
        from nbcore import open_backend
        env = open_backend("demo", config=%r, backend="venv", protocol="tcp-pickle")
        env.connection.shutdown_grace = 0.5
        print(env.call("os:getpid"), flush=True)
        threading.Thread(target=env.call, args=("%s", %r), daemon=True).start()
    ''' % (CONFIG, f("sleep_forever"), started))
    host = subprocess.Popen([sys.executable, "-c", script], cwd=str(worker_module), env=clean_environ(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = host.communicate(timeout=120)
    finally:
        host.kill()
    assert host.returncode == 0, err
    assert os.path.exists(started), "the stuck call had started"
    wait_gone(int(out.split()[0]))


# 4. SystemExit and KeyboardInterrupt in the worker --------------------------------------------

@pytest.mark.parametrize("target, args, type_name", [
    ("sys:exit", (0,), "builtins.SystemExit"),
    ("sys:exit", (3,), "builtins.SystemExit"),
    (f("raise_keyboard_interrupt"), (), "builtins.KeyboardInterrupt"),
    (f("raise_generator_exit"), (), "builtins.GeneratorExit"),
])
def test_base_exceptions_of_the_worker_are_remote_errors(env, target, args, type_name):
    with pytest.raises(RemoteError) as info:
        env.call(target, *args)
    assert info.value.type_name == type_name
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert env.call(f("add"), 1, 2) == 3


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_still_raises_keyboard_interrupt_when_the_worker_code_raises_it(env):
    timer = threading.Timer(0.3, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            env.call(f("interrupt_when_cancelled"), 20)
    finally:
        timer.cancel()
    assert env.call(f("add"), 1, 2) == 3


def test_cli_call_of_sys_exit_is_one_line_and_non_zero(worker_module):
    write(worker_module / "nbcore.yaml", "environments:\n  demo: {packages: [numpy]}\n")
    result = run_nbcore("call", "demo", "sys:exit", "--args", "[0]", "--backend", "venv", cwd=worker_module)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "nbcore: error: the call raised builtins.SystemExit: 0\n"
