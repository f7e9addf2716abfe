"""Ends of life: either side SIGKILLed, two hosts at once, a long soak, named-file fallback, a Python 3.8 worker."""
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import nbcore
from nbcore.testing import python_or_skip, read_line
from nbcore.worker.framing import ConnectionClosed

from conftest import NUMPY_ENV, pattern, shm_entries
from nbtest import pid_alive

HOST_SCRIPT = '''
import sys
import numpy as np
import nbcore

config = {config!r}
with nbcore.open_backend("shmtest", config=config, backend="venv") as env:
    assert env.protocol.startswith("shm-pickle"), env.protocol
    mode = sys.argv[1]
    if mode == "hang":
        kept = env.call("shm_targets:make", 4 << 20, 1)
        print(env.call("shm_targets:pid"), flush=True)
        env.call("shm_targets:sleep", 120)
    else:
        seed = int(mode)
        kept = []
        for i in range(300):
            sent = (np.arange(200_000, dtype=np.uint32) * (seed + 1) + i).astype(np.uint8)
            back = env.call("shm_targets:echo", sent)
            assert np.array_equal(back, sent)
            got = env.call("shm_targets:make", 150_000, seed * 1000 + i)
            if i % 30 == 0:
                kept.append((seed * 1000 + i, got))
        for s, array in kept:
            expected = ((np.arange(150_000, dtype=np.uint32) * 2654435761 + s) >> 7).astype(np.uint8)
            assert np.array_equal(array, expected)
        print("ok", seed, flush=True)
'''


def ours(entries):
    return {e for e in entries if "nbcore" in e}


def shm_used():
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def host_process(targets_dir, mode):
    return subprocess.Popen([sys.executable, "-c", HOST_SCRIPT.format(config=NUMPY_ENV), mode],
                            cwd=str(targets_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_worker_sigkilled_mid_call(open_env):
    before = shm_entries()
    with open_env("venv") as env:
        kept = env.call("shm_targets:make", 4 << 20, 1)
        pid = env.call("shm_targets:pid")
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            with pytest.raises(nbcore.WorkerError, match="died|lost the connection"):
                env.call("shm_targets:sleep", 60)
        finally:
            killer.cancel()
        np.testing.assert_array_equal(kept, pattern(4 << 20, 1))  # the host's arrays outlive the worker
        with pytest.raises(nbcore.WorkerError):
            env.call("operator:add", 1, 2)
    del kept
    assert ours(shm_entries() - before) == set()


def test_host_sigkilled_mid_call(targets_dir, nbcore_home):
    before = shm_entries()
    host = host_process(targets_dir, "hang")
    try:
        worker_pid = int(read_line(host.stdout))
        assert pid_alive(worker_pid)
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        deadline = time.monotonic() + 3
        while pid_alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(worker_pid), "the worker outlived its SIGKILLed host"
    finally:
        host.kill()
        host.communicate()
    assert ours(shm_entries() - before) == set()


def test_two_hosts_with_two_workers_at_once(targets_dir, nbcore_home):
    hosts = [host_process(targets_dir, str(seed)) for seed in (1, 2)]
    outputs = [h.communicate(timeout=300) for h in hosts]
    for seed, (h, (out, err)) in zip((1, 2), zip(hosts, outputs)):
        assert h.returncode == 0, err[-2000:]
        assert out.strip() == "ok %d" % seed


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_soak_ten_thousand_calls(open_env):
    with open_env("venv", NBCORE_SHM_SEGMENT_SIZE=8 << 20) as env:
        sent = pattern(200_000, 4)

        def batch(start, count):
            for i in range(start, start + count):
                kind = i % 4
                if kind == 0:
                    assert env.call("operator:add", i, 1) == i + 1
                elif kind == 1:
                    assert env.call("shm_targets:make", 100_000, i)[5] == pattern(6, i)[5]
                elif kind == 2:
                    assert env.call("shm_targets:echo", sent)[-1] == sent[-1]
                else:
                    assert env.call("shm_targets:prealloc", 300_000, i)[7] == pattern(8, i)[7]

        batch(0, 2000)
        gc.collect()
        rss, used, stats = _rss_bytes(), shm_used(), env.call("shm_targets:stats")
        batch(2000, 8000)
        gc.collect()
        assert env.call("shm_targets:stats")["mapped"] == stats["mapped"]
        assert _rss_bytes() - rss < 16 << 20
        assert abs(shm_used() - used) < 64 << 20


def test_named_segment_files_are_unlinked_at_once(open_env, monkeypatch):
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    before = shm_entries()
    with open_env("python") as env:
        array = env.call("shm_targets:make", 3 << 20, 2)
        assert ours(shm_entries() - before) == set()
        np.testing.assert_array_equal(env.call("shm_targets:echo", array), array)
    assert ours(shm_entries() - before) == set()


def test_closed_channel_reports_connection_closed(open_env):
    with open_env("python") as env:
        channel = env.connection.channel
    with pytest.raises(ConnectionClosed):
        channel.send(("after", "close"))


@pytest.mark.slow  # builds a Python 3.8 environment with numpy
@pytest.mark.filterwarnings("ignore:numpy.core.numeric is deprecated")
def test_python38_worker(open_env, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(python_or_skip("3.8")) + os.pathsep + os.environ["PATH"])
    config = {"environments": {"shmtest": {"python": "3.8", "packages": ["numpy"]}}}
    with open_env("venv", config=config) as env:
        assert env.worker_python.startswith("3.8.")
        assert env.protocol == "shm-pickle5-buffers"
        # numpy 1.x cannot unpickle numpy 2 arrays: send plain buffers that way.
        data = bytearray(b"\x02" * (3 << 20))
        assert env.call("shm_targets:total", pickle.PickleBuffer(data)) == 2 * len(data)
        np.testing.assert_array_equal(env.call("shm_targets:prealloc", 1 << 20, 3), pattern(1 << 20, 3))


@pytest.mark.parametrize("version", ["3.8", "host"], ids=["python3.8", "host-python-as-3.8"])
def test_worker_module_runs_on_python38_syntax(version):
    """Parsed by a real 3.8 where one is found, and always by this interpreter's parser held to 3.8's grammar."""
    python = sys.executable if version == "host" else python_or_skip(version)
    import nb_shm.worker

    folder = os.path.dirname(nb_shm.worker.__file__)
    code = textwrap.dedent("""
        import ast, sys, pathlib
        paths = sorted(pathlib.Path(sys.argv[1]).glob("*.py"))
        assert paths, sys.argv[1]
        for path in paths:
            ast.parse(path.read_text(), str(path), feature_version=(3, 8))
    """)
    subprocess.run([python, "-c", code, folder], check=True, timeout=60)
