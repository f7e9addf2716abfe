"""Fixtures for the nb-shm suite: a worker-side module of test targets and environments to open."""
import contextlib
import os
import sys
import textwrap

import pytest

import nbcore

SHM = "/dev/shm"
NUMPY_ENV = {"environments": {"shmtest": {"packages": ["numpy"]}}}

TARGETS = '''
"""Worker-side functions of the nb-shm tests."""
import os
import pickle
import time

import numpy as np

from nbcore.worker import allocate_buffer, allocate_ndarray, allocation


def echo(value):
    return value


def pattern(nbytes, seed=0):
    return ((np.arange(nbytes, dtype=np.uint32) * 2654435761 + seed) >> 7).astype(np.uint8)


def make(nbytes, seed=0):
    return pattern(nbytes, seed)


def prealloc(nbytes, seed=0):
    array = allocate_ndarray(nbytes, np.uint8)
    array[:] = pattern(nbytes, seed)
    return array


def prealloc_buffer(nbytes):
    buffer = allocate_buffer(nbytes)
    memoryview(buffer)[:] = b"\\x07" * nbytes
    return pickle.PickleBuffer(buffer)


def total(array):
    return int(np.asarray(array, dtype=np.uint64).sum())


def stats():
    channel = allocation._channel
    out = getattr(channel, "_out", None)
    if out is None:
        return {"protocol": channel.name}
    out.drain()
    return {"protocol": channel.name, "mapped": out.mapped, "regions": len(out.regions),
            "segments": len(out.segments)}


def pid():
    return os.getpid()


def spin():
    return allocation._channel.spin


def sleep(seconds):
    time.sleep(seconds)
'''


def pattern(nbytes, seed=0):
    """The host-side twin of the targets' ``pattern``."""
    import numpy as np

    return ((np.arange(nbytes, dtype=np.uint32) * 2654435761 + seed) >> 7).astype(np.uint8)


def shm_entries():
    """Names in /dev/shm (empty when there is none)."""
    return set(os.listdir(SHM)) if os.path.isdir(SHM) else set()


@pytest.fixture(scope="session")
def targets_dir(tmp_path_factory):
    """A folder holding ``shm_targets.py``; workers started from it import it."""
    folder = tmp_path_factory.mktemp("shm-targets")
    (folder / "shm_targets.py").write_text(textwrap.dedent(TARGETS))
    sys.path.insert(0, str(folder))  # for the in-process python backend
    return folder


@pytest.fixture(scope="session")
def open_env(nbcore_home, targets_dir):
    """``open_env(backend="venv", protocol=None, **variables)``: open the numpy test env with variables set."""

    @contextlib.contextmanager
    def opener(backend="venv", protocol=None, config=None, **variables):
        with pytest.MonkeyPatch.context() as mp:
            for name in ("NBCORE_PROTOCOL", "NERFBASELINES_PROTOCOL", "NBCORE_BACKEND", "NBCORE_SHM_COPY",
                         "NBCORE_SHM_DIR", "NBCORE_SHM_SEGMENT_SIZE", "NBCORE_SHM_LIMIT",
                         "NBCORE_SHM_SPIN_US"):
                mp.delenv(name, raising=False)
            for name, value in variables.items():
                mp.setenv(name, str(value))
            mp.chdir(targets_dir)
            env = nbcore.open_backend("shmtest", config=config or NUMPY_ENV, backend=backend, protocol=protocol)
        try:
            yield env
        finally:
            env.close()

    return opener
