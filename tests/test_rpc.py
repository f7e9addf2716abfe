"""RPC through a real worker: functions, remote objects, generators, errors, cancellation, numpy.

Every test runs on the in-process ``python`` backend and on the ``venv`` backend
(an isolated virtual environment with numpy, built once per run).
"""
import gc
import itertools
import os
import signal
import sys
import threading
import time

import pytest

from nbcore.errors import RemoteError, RemoteTraceback
from nbcore.worker.cancel import CancelledError

from nbtest import RPC_TEST_FUNCTIONS, open_test_env

MODULE = "nbt_rpc_mod"
CONFIG = {"environments": {"demo": {"packages": ["numpy"]}}}

SOURCE = RPC_TEST_FUNCTIONS + '''
import sys
import threading
import time

from nbcore.worker import check_cancelled, is_cancelled

produced = []


def getcwd():
    return os.getcwd()


class Model:
    def __init__(self, size=1):
        self.size = size

    def render(self, x, scale=1):
        return [x * scale] * self.size

    def train(self, steps):
        for i in range(steps):
            yield {"step": i, "size": self.size}


class Holder:
    def __init__(self):
        self.lock = threading.Lock()
        self.value = 41

    def bump(self):
        self.value += 1
        return self.value


def make_holder():
    return Holder()


def read_holder(holder):
    return (type(holder).__name__, holder.value)


def counting(n):
    for i in range(n):
        produced.append(i)
        yield i


def produced_count():
    return len(produced)


def reset():
    del produced[:]


def forever():
    i = 0
    while True:
        yield i
        i += 1


class CustomError(Exception):
    pass


def helper_that_fails():
    raise ValueError("bad value 42")


def fail():
    return helper_that_fails()


def fail_custom():
    raise CustomError("custom")


def fail_unpicklable():
    exc = RuntimeError("carries a lock")
    exc.lock = threading.Lock()
    raise exc


def gen_fails():
    yield 1
    raise KeyError("in generator")


def wait_for_cancel(timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_cancelled():
            return "cancelled"
        time.sleep(0.01)
    return "timeout"


def check_loop(timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_cancelled()
        time.sleep(0.01)
    return "timeout"


def double(a):
    return a * 2


def make_frame(h, w):
    import numpy as np
    return np.arange(h * w * 3, dtype=np.float32).reshape(h, w, 3), np.ones((h, w, 1), dtype=np.float32)


def array_info(a):
    return (a.shape, str(a.dtype), float(a.sum()), bool(a.flags["C_CONTIGUOUS"]))
'''


@pytest.fixture(scope="module", params=["python", "venv"])
def env(request, nbcore_home, worker_module):
    with open_test_env("demo", CONFIG, request.param) as remote_env:
        yield remote_env


def f(name):
    return "%s:%s" % (MODULE, name)


def test_call_function(env, request):
    assert env.call(f("add"), 2, 3) == 5
    assert env.call(f("add"), "a", b="b") == "ab"
    assert env.backend == request.node.callspec.params["env"]
    assert env.protocol == "tcp-pickle5-buffers"


def test_worker_runs_in_the_host_cwd(env, worker_module):
    assert os.path.realpath(env.call(f("getcwd"))) == os.path.realpath(str(worker_module))
    if env.backend == "venv":
        assert env.call(f("pid")) != os.getpid()


def test_remote_class_and_methods(env):
    Model = env.remote(f("Model"))
    model = Model(size=3)
    assert "Model" in repr(model)
    assert model.render(2, scale=5) == [10, 10, 10]
    assert model.size == 3
    steps = list(model.train(4))
    assert steps == [{"step": i, "size": 3} for i in range(4)]


def test_unpicklable_results_stay_remote_and_are_freed(env):
    before = env.call(f("live_objects"))
    holder = env.call(f("make_holder"))
    assert "Holder" in repr(holder)
    assert env.call(f("live_objects")) == before + 1
    assert holder.bump() == 42
    assert holder.value == 42
    lock = holder.lock  # an unpicklable attribute is a proxy too
    assert "lock" in repr(lock).lower()
    # a proxy passed back as an argument is the real object in the worker
    assert env.call(f("read_holder"), holder) == ("Holder", 42)
    assert env.call(f("live_objects")) == before + 2
    del holder, lock
    gc.collect()
    # the release travels with the next request
    assert env.call(f("live_objects")) == before


def test_generators_stream_item_by_item(env):
    env.call(f("reset"))
    it = env.call(f("counting"), 100)
    assert env.call(f("produced_count")) == 0
    assert next(it) == 0
    assert env.call(f("produced_count")) == 1
    assert next(it) == 1
    assert env.call(f("produced_count")) == 2
    assert list(it) == list(range(2, 100))
    with pytest.raises(StopIteration):
        next(it)
    assert list(itertools.islice(env.call(f("forever")), 5)) == [0, 1, 2, 3, 4]


def test_exception_carries_the_worker_traceback(env):
    with pytest.raises(ValueError, match="bad value 42") as info:
        env.call(f("fail"))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "Traceback (most recent call last)" in cause.text
    assert "helper_that_fails" in cause.text and "ValueError: bad value 42" in cause.text
    assert MODULE + ".py" in cause.text


def test_exception_class_the_host_imports_is_raised_as_itself(env, worker_module, monkeypatch):
    monkeypatch.syspath_prepend(str(worker_module))
    with pytest.raises(Exception) as info:
        env.call(f("fail_custom"))
    assert (type(info.value).__module__, type(info.value).__name__) == (MODULE, "CustomError")
    assert isinstance(info.value.__cause__, RemoteTraceback)


def test_exception_class_unknown_to_the_host_becomes_a_remote_error(env, worker_module, monkeypatch):
    if env.backend == "python":
        pytest.skip("in process, every class of the worker is the host's")
    hidden = {"", ".", os.getcwd(), str(worker_module)}
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in hidden])
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    with pytest.raises(RemoteError) as info:
        env.call(f("fail_custom"))
    assert info.value.type_name == MODULE + ".CustomError"
    assert isinstance(info.value.__cause__, RemoteTraceback)


def test_unpicklable_exception_keeps_its_message_and_traceback(env):
    with pytest.raises(Exception) as info:
        env.call(f("fail_unpicklable"))
    assert "carries a lock" in str(info.value)
    assert "fail_unpicklable" in info.value.__cause__.text


def test_errors_from_generators_and_missing_targets(env):
    it = env.call(f("gen_fails"))
    assert next(it) == 1
    with pytest.raises(KeyError, match="in generator"):
        next(it)
    with pytest.raises(AttributeError):
        env.call(f("no_such_function"))
    with pytest.raises(ModuleNotFoundError):
        env.call("nbt_no_such_module:f")
    with pytest.raises(ValueError, match="module:qualname"):
        env.call("no_colon")
    assert env.call(f("add"), 1, 1) == 2, "the connection survives errors"


def cancel_when_running(env, delay=0.2):
    def run():
        deadline = time.monotonic() + 10
        while env.connection.current_call is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        env.connection.cancel(env.connection.current_call)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_cancel_from_another_thread(env):
    thread = cancel_when_running(env)
    assert env.call(f("wait_for_cancel"), 20) == "cancelled"
    thread.join()
    thread = cancel_when_running(env)
    with pytest.raises(CancelledError):
        env.call(f("check_loop"), 20)
    thread.join()
    # a later call is not affected by the earlier cancel
    assert env.call(f("wait_for_cancel"), 0.3) == "timeout"


def interrupt_main(later, delay):
    later(delay, signal.pthread_kill, threading.main_thread().ident, signal.SIGINT)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_cancels_the_running_call(env, later):
    interrupt_main(later, 0.3)
    with pytest.raises(KeyboardInterrupt):
        env.call(f("wait_for_cancel"), 20)
    interrupt_main(later, 0.3)
    with pytest.raises(KeyboardInterrupt):
        env.call(f("check_loop"), 20)
    assert env.call(f("add"), 1, 2) == 3


def test_numpy_both_directions(env):
    np = pytest.importorskip("numpy")
    a = np.random.default_rng(0).standard_normal((480, 640, 3)).astype(np.float32)
    np.testing.assert_array_equal(env.call(f("double"), a), a * 2)
    shape, dtype, total, contiguous = env.call(f("array_info"), a[::2, ::3])
    assert (tuple(shape), dtype) == ((240, 214, 3), "float32")
    assert total == pytest.approx(float(a[::2, ::3].sum()), rel=1e-4)
    rgb, alpha = env.call(f("make_frame"), 1080, 1920)
    assert rgb.shape == (1080, 1920, 3) and rgb.dtype == np.float32 and alpha.shape == (1080, 1920, 1)
    assert rgb[-1, -1, -1] == 1080 * 1920 * 3 - 1 and float(alpha.sum()) == 1080 * 1920
    rgb[0, 0, 0] = 5  # the received array is writable
    objects = env.call(f("double"), np.array([1, 2], dtype=object))
    assert list(objects) == [2, 4]


def test_allocate_ndarray_crosses(env):
    pytest.importorskip("numpy")
    buf = env.allocate_ndarray((100, 100), "float64")
    buf[:] = 1.5
    assert env.call(f("array_info"), buf)[2] == 15000.0


def test_concurrent_requests_are_serialised(env):
    results = {}

    def worker(i):
        results[i] = [env.call(f("add"), i, j) for j in range(20)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [i + j for j in range(20)] for i in range(4)}
