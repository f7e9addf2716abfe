"""shm-pickle under failing (un)pickling: nothing half-sent, no shared memory region left behind."""
import gc
import textwrap

import numpy as np
import pytest

from nbcore.host.connection import RemoteObject

SOURCE = '''
import sys
import types

import numpy as np

from nbcore.worker import allocate_ndarray


class RefusesPickling:
    def __reduce__(self):
        raise RuntimeError("refuses to be pickled")


def allocated_then_refused(nbytes):
    """A shared memory array, then an object whose pickling fails after the array's was done."""
    array = allocate_ndarray(nbytes, np.uint8)
    array[:] = 7
    return [array, RefusesPickling()]


def large_then_refused(nbytes):
    return [np.full(nbytes, 7, np.uint8), RefusesPickling()]


class Thing:
    def __init__(self, value):
        self.value = value


def large_then_worker_only(nbytes):
    """A large array (sent through shared memory) and an object whose module the host lacks."""
    module = types.ModuleType("nbt_shm_worker_only")
    module.Thing = type("Thing", (Thing,), {"__module__": "nbt_shm_worker_only"})
    sys.modules["nbt_shm_worker_only"] = module
    return [np.full(nbytes, 7, np.uint8), module.Thing(nbytes)]


def first_sum(items):
    return int(items[0].sum())
'''


@pytest.fixture(scope="module")
def shm_env(open_env, targets_dir):
    (targets_dir / "shm_failures.py").write_text(textwrap.dedent(SOURCE))
    with open_env() as env:
        assert env.protocol == "shm-pickle5-buffers"
        yield env


def regions(env):
    gc.collect()
    env.call("operator:add", 0, 0)  # release notes of the host's dropped views ride on a request
    return env.call("shm_targets:stats")["regions"]


@pytest.mark.parametrize("function", ["allocated_then_refused", "large_then_refused"])
def test_failed_pickle_of_a_result_leaves_no_region(shm_env, function):
    before = regions(shm_env)
    pid = shm_env.call("shm_targets:pid")
    result = shm_env.call("shm_failures:" + function, 1 << 20)
    assert isinstance(result, RemoteObject)
    assert shm_env.call("shm_failures:first_sum", result) == 7 << 20
    del result
    assert regions(shm_env) == before
    assert shm_env.call("shm_targets:pid") == pid, "the worker survived"


def test_result_the_host_cannot_import_over_shared_memory(shm_env):
    before = regions(shm_env)
    result = shm_env.call("shm_failures:large_then_worker_only", 1 << 20)
    assert isinstance(result, RemoteObject), "the whole reply stays in the worker"
    assert shm_env.call("shm_failures:first_sum", result) == 7 << 20
    del result
    assert regions(shm_env) == before
    back = shm_env.call("shm_targets:echo", np.arange(1 << 20, dtype=np.uint8))
    assert int(back[-1]) == 255, "the channel carries the next message"
