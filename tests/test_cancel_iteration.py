"""Cancelling a generator cancels the iteration, not just the current next(), on both protocols; also when
the generator runs ahead of its next() calls (``run_ahead``)."""
import threading
import time

import pytest

from nbcore.worker.cancel import CancelledError

from nbtest import open_test_env

MODULE = "nbt_cancel_iter_mod"

SOURCE = '''
import time

from nbcore.worker import check_cancelled, is_cancelled, run_ahead


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


def steps_ahead(n):
    return run_ahead(steps(n), 2)


def wait_then_report_ahead(timeout):
    return run_ahead(wait_then_report(timeout))
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


@pytest.mark.parametrize("suffix", ["", "_ahead"], ids=["one-by-one", "run-ahead"])
def test_a_cancel_between_items_stops_the_check_cancelled_loop(env, suffix):
    stop = threading.Event()
    thread = threading.Thread(target=keep_cancelling, args=(env, stop), daemon=True)
    items = []
    thread.start()
    try:
        with pytest.raises(CancelledError):
            for item in env.call(f("steps" + suffix), 300):
                items.append(item)
    finally:
        stop.set()
        thread.join()
    assert len(items) < 50, "the iteration went on after the cancel (%d items)" % len(items)
    assert env.call(f("flag")) is False, "a later call starts uncancelled"
    assert list(env.call(f("steps" + suffix), 3)) == [0, 1, 2], "so does a later generator"


@pytest.mark.parametrize("suffix", ["", "_ahead"], ids=["one-by-one", "run-ahead"])
def test_is_cancelled_stays_true_in_the_cancelled_generator(env, suffix):
    it = env.call(f("wait_then_report" + suffix), 20)

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
    it = env.call(f("wait_then_report" + suffix), 0.2)
    assert list(it) == ["timeout", False, False], "a new generator starts uncancelled"


def test_the_host_can_run_a_remote_generator_ahead(env):
    """The worker's run_ahead takes the host's proxy of a remote generator: the generator itself."""
    it = env.call("nbcore.worker:run_ahead", env.call(f("steps"), 5), 2)
    assert list(it) == [0, 1, 2, 3, 4]


def test_a_cancel_that_lands_before_the_next_starts_cancels_the_iteration_too():
    from nbcore.worker import cancel

    iteration, first, second = object(), -101, -102
    cancel._request(first)
    outer = cancel._set_current_call(first, iteration)
    try:
        assert cancel.is_cancelled()
        cancel._forget(first)
        cancel._set_current_call(second, iteration)
        assert cancel.is_cancelled(), "the iteration stays cancelled in its later next() calls"
    finally:
        cancel._set_current_call(*outer)
        cancel._end_iteration(iteration)
