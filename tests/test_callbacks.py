"""The worker calls back into the host: host callables passed as arguments arrive as proxies.

Every test runs in process, on a venv worker over tcp-pickle and shm-pickle, and on a Python 3.8
venv worker over both protocols.
"""
import functools
import gc
import os
import threading
import time
import weakref

import pytest

from nbcore.builtin import venv as venv_backend

from nbcore.testing import python_or_skip

from nbtest import open_test_env

MODULE = "nbt_callbacks_mod"

SOURCE = '''
import threading
import time

from nbcore.worker import CancelledError, check_cancelled, is_cancelled

_kept = []
_thread_result = []
_last_error = []


def add(a, b):
    return a + b


def apply(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def train(steps, report, stop=None):
    for step in range(steps):
        if stop is not None and stop():
            return step
        report({"step": step})
    return steps


def call_all(callbacks, **named):
    results = [callback(i) for i, callback in enumerate(callbacks["list"])]
    results.append(callbacks["one"]())
    results.extend(named[key]() for key in sorted(named))
    return results


def stream(n, report):
    for i in range(n):
        report(i)
        yield i * 10


def catch(fn):
    try:
        fn()
    except ValueError as exc:
        return "caught %s" % exc, "Traceback on the host" in str(exc.__cause__)
    return "not raised", False


def use_host_object(make):
    box = make()
    return type(box).__name__, box.value, box.bump(), box.bump()


def give_back(make):
    return make()


def keep(callback):
    _kept.append(callback)


def call_kept(*args):
    return _kept[-1](*args)


def drop_kept():
    del _kept[:]


def call_from_thread(callback):
    results = []
    thread = threading.Thread(target=lambda: results.append(callback(5)))
    thread.start()
    thread.join()
    return results[0]


def call_later_from_thread(callback, delay):
    def run():
        time.sleep(delay)
        try:
            callback()
        except Exception as exc:
            _thread_result.append("%s: %s" % (type(exc).__name__, exc))
        else:
            _thread_result.append("ran")
    threading.Thread(target=run, daemon=True).start()


def thread_result():
    return _thread_result[-1] if _thread_result else None


def report_until_cancelled(report):
    try:
        for step in range(100000):
            report(step)
            check_cancelled()
    except CancelledError:
        _last_error.append("CancelledError in the worker, is_cancelled=%s" % is_cancelled())
        raise


def last_error():
    return _last_error[-1] if _last_error else None
'''


class Box:
    """Does not pickle (it holds a lock): a callback returning it gives the worker a proxy."""

    def __init__(self):
        self.lock = threading.Lock()
        self.value = 41

    def bump(self):
        self.value += 1
        return self.value


class Recorder:
    def __init__(self):
        self.items = []

    def record(self, item):
        self.items.append(item)
        return len(self.items)


PARAMS = [("python", "tcp-pickle"), ("venv", "tcp-pickle"), ("venv", "shm-pickle"),
          ("venv-3.8", "tcp-pickle"), ("venv-3.8", "shm-pickle")]


@pytest.fixture(scope="module", params=PARAMS, ids=["-".join(p) for p in PARAMS])
def env(request, nbcore_home, worker_module):
    backend, protocol = request.param
    name, config = "demo", {"environments": {"demo": {}}}
    with pytest.MonkeyPatch.context() as mp:
        if backend == "venv-3.8":
            mp.setenv("PATH", os.path.dirname(python_or_skip("3.8")) + os.pathsep + os.environ["PATH"])
            venv_backend.find_interpreter.cache_clear()
            name, config, backend = "demo38", {"environments": {"demo38": {"python": "3.8"}}}, "venv"
        try:
            with open_test_env(name, config, backend, protocol) as remote_env:
                if name == "demo38":
                    assert remote_env.worker_python.startswith("3.8.")
                yield remote_env
        finally:
            venv_backend.find_interpreter.cache_clear()


def f(name):
    return "%s:%s" % (MODULE, name)


def test_function_lambda_bound_method_and_partial_are_called_on_the_host(env):
    seen = []
    assert env.call(f("train"), 3, seen.append) == 3
    assert seen == [{"step": 0}, {"step": 1}, {"step": 2}]
    host_thread = []
    assert env.call(f("apply"), lambda x, y=0: (x + y, host_thread.append(threading.current_thread())), 2, y=3)[0] == 5
    assert host_thread == [threading.current_thread()], "the callback runs in the thread that made the call"
    recorder = Recorder()
    assert env.call(f("train"), 2, recorder.record) == 2
    assert recorder.items == [{"step": 0}, {"step": 1}]
    assert env.call(f("apply"), functools.partial(divmod, 17), 5) == (3, 2)
    assert env.call(f("train"), 10, seen.append, stop=lambda: len(seen) >= 5) == 2


def test_callbacks_nested_in_lists_dicts_and_kwargs(env):
    recorder = Recorder()
    result = env.call(f("call_all"), {"list": [lambda i: i * 10, recorder.record], "one": lambda: "one"},
                      named=lambda: "kw", other=functools.partial(str, 7))
    assert result == [0, 1, "one", "kw", "7"]
    assert recorder.items == [1]


def test_results_by_value_and_unpicklable_results_as_host_proxies(env):
    assert env.call(f("apply"), lambda: {"a": [1, 2]}) == {"a": [1, 2]}
    box = Box()
    assert env.call(f("use_host_object"), lambda: box) == ("HostProxy", 41, 42, 43)
    assert box.value == 43
    # a host proxy handed back to the host is the host's own object
    assert env.call(f("give_back"), lambda: box) is box


def test_exceptions_cross_both_ways(env):
    def fails():
        raise ValueError("from the host callback")

    assert env.call(f("catch"), fails) == ("caught from the host callback", True)
    with pytest.raises(ValueError, match="from the host callback") as info:
        env.call(f("apply"), fails)
    assert "apply" in info.value.__cause__.text, "the worker's traceback, as for any remote error"
    assert env.call(f("add"), 1, 2) == 3, "the connection survives"


def test_callbacks_while_a_generator_is_consumed(env):
    seen = []
    items = []
    for item in env.call(f("stream"), 3, seen.append):
        items.append(item)
        assert seen[-1] * 10 == item, "each callback runs during its own next()"
    assert items == [0, 10, 20]


def test_a_callback_may_call_into_the_same_environment_again(env):
    assert env.call(f("apply"), lambda x: env.call(f("add"), x, 1), 41) == 42
    # two levels deep, through a generator consumed inside the callback
    assert env.call(f("apply"), lambda: list(env.call(f("stream"), 2, lambda i: env.call(f("add"), i, 0)))) == [0, 10]


def test_callbacks_from_another_worker_thread_during_the_call(env):
    assert env.call(f("call_from_thread"), lambda x: x * 3) == 15


def test_a_kept_callback_works_in_later_calls_and_is_released_when_dropped(env):
    calls = []

    def callback(*args):
        calls.append(args)
        return len(calls)

    dropped = weakref.ref(callback)
    env.call(f("keep"), callback)
    del callback  # the host holds it for the worker meanwhile
    gc.collect()
    assert env.call(f("call_kept"), "x") == 1
    assert calls == [("x",)]
    env.call(f("drop_kept"))
    env.call(f("add"), 1, 1)  # the release travels with the next message
    gc.collect()
    assert dropped() is None, "the worker dropped its proxy: the host let go of the callable"


def test_a_callback_called_while_the_host_is_not_waiting_raises_in_the_worker(env):
    env.call(f("call_later_from_thread"), lambda: None, 0.2)
    time.sleep(1.5)  # the host waits for nothing meanwhile
    assert env.call(f("thread_result")).startswith("HostUnavailable: ")
    assert "only be called while the host waits" in env.call(f("thread_result"))


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_during_a_callback_cancels_the_call(env, later, capfd):
    import signal

    def slow_report(step):
        time.sleep(0.05)

    later(0.4, signal.pthread_kill, threading.main_thread().ident, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        env.call(f("report_until_cancelled"), slow_report)
    assert env.call(f("last_error")) == "CancelledError in the worker, is_cancelled=True"
    assert "cancelling the call to %s; press Ctrl-C again to stop the worker" % f("report_until_cancelled") \
        in capfd.readouterr().err
    assert env.call(f("add"), 2, 2) == 4
