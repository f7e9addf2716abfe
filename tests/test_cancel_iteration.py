"""Cancelling a generator cancels the iteration, not just the current next(), on both protocols."""
import threading
import time

import pytest

from nbcore.worker.cancel import CancelledError

from nbtest import open_test_env

MODULE = "nbt_cancel_iter_mod"

SOURCE = '''
import time

from nbcore.worker import check_cancelled, is_cancelled


def steps(n):
    for step in range(n):
        check_cancelled()
        time.sleep(0.005)
        yield step


def wait_then_report(timeout):
    deadline = time.monotonic() + timeout
    while not is_cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield "cancelled" if is_cancelled() else "timeout"
    yield is_cancelled()
    yield is_cancelled()


def flag():
    return is_cancelled()
'''

PARAMS = [("python", "tcp-pickle"), ("venv", "tcp-pickle"), ("venv", "shm-pickle")]


@pytest.fixture(scope="module", params=PARAMS, ids=["-".join(p) for p in PARAMS])
def env(request, nbcore_home, worker_module):
    backend, protocol = request.param
    with open_test_env("demo", {"environments": {"demo": {}}}, backend, protocol) as remote_env:
        yield remote_env


def f(name):
    return "%s:%s" % (MODULE, name)


def keep_cancelling(env, stop, period=0.02):
    """Cancel whatever call is waiting every ``period`` seconds, as an impatient user would."""
    while not stop.is_set():
        call_id = env.connection.current_call
        if call_id is not None:
            env.connection.cancel(call_id)
        time.sleep(period)


def test_a_cancel_between_items_stops_the_check_cancelled_loop(env):
    stop = threading.Event()
    thread = threading.Thread(target=keep_cancelling, args=(env, stop), daemon=True)
    items = []
    thread.start()
    try:
        with pytest.raises(CancelledError):
            for item in env.call(f("steps"), 300):
                items.append(item)
    finally:
        stop.set()
        thread.join()
    assert len(items) < 50, "the iteration went on after the cancel (%d items)" % len(items)
    assert env.call(f("flag")) is False, "a later call starts uncancelled"
    assert list(env.call(f("steps"), 3)) == [0, 1, 2], "so does a later generator"


def test_is_cancelled_stays_true_in_the_cancelled_generator(env):
    it = env.call(f("wait_then_report"), 20)

    def cancel_soon():
        deadline = time.monotonic() + 10
        while env.connection.current_call is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        env.connection.cancel(env.connection.current_call)

    thread = threading.Thread(target=cancel_soon, daemon=True)
    thread.start()
    assert next(it) == "cancelled"
    thread.join()
    assert next(it) is True and next(it) is True
    with pytest.raises(StopIteration):
        next(it)
    assert env.call(f("flag")) is False
    it = env.call(f("wait_then_report"), 0.2)
    assert list(it) == ["timeout", False, False], "a new generator starts uncancelled"
