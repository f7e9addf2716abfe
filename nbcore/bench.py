"""``nbcore bench``: latency, frame transfer and start time, each beside a same-run reference.

References are measured interleaved with the protocol (alternating blocks) so
that machine noise hits both alike: a bare ``multiprocessing.Pipe`` round trip
for the no-op, a memcpy of the same bytes for the frame, and the environment's
interpreter running ``python -c pass`` for the start time.
"""
import multiprocessing
import statistics
import time
from pathlib import Path

from .backend import WorkerLaunch
from .host import prepare, staged_worker_path, start

TARGETS = "nbcore.worker.bench_targets"
NOOP_BLOCKS = 10


def _pipe_echo(connection):
    while True:
        message = connection.recv()
        if message is None:
            break
        connection.send(message)


class PipeReference:
    """A child process echoing over a bare ``multiprocessing.Pipe``."""

    def __init__(self):
        self.connection, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(target=_pipe_echo, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def round_trips(self, count):
        send, recv, out = self.connection.send, self.connection.recv, []
        clock = time.perf_counter
        for _ in range(count):
            t = clock()
            send(1)
            recv()
            out.append(clock() - t)
        return out

    def close(self):
        self.connection.send(None)
        self.process.join(5)


def _timed(fn, count):
    out = []
    clock = time.perf_counter
    for _ in range(count):
        t = clock()
        fn()
        out.append(clock() - t)
    return out


def _memcpy(frame):
    """A function copying ``frame``'s bytes into preallocated memory (the frame reference)."""
    try:
        import numpy as np

        sources = [np.asarray(memoryview(p)).view(np.uint8).reshape(-1) for p in frame]
        targets = [np.empty_like(s) for s in sources]

        def copy():
            for s, t in zip(sources, targets):
                np.copyto(t, s)
    except ImportError:
        sources = [memoryview(p).cast("B") for p in frame]
        targets = [memoryview(bytearray(s.nbytes)) for s in sources]

        def copy():
            for s, t in zip(sources, targets):
                t[:] = s
    copy()
    return copy


def _ms(values):
    return statistics.median(values) * 1e3


def _percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_start(config, provider, env, protocol, count):
    """Median seconds from opening an installed env to the first call's result, and of ``python -c pass``."""
    starts, pythons = [], []
    for _ in range(count):
        t = time.perf_counter()
        remote_env = start(config, provider, env, protocol)
        remote_env.call(TARGETS + ":noop")
        starts.append(time.perf_counter() - t)
        remote_env.close()
        launch = WorkerLaunch(worker_path=staged_worker_path(), cwd=Path.cwd(), variables={},
                              python_args=["-c", "pass"])
        t = time.perf_counter()
        process = provider.start_worker(env, launch)
        process.wait(60)
        pythons.append(time.perf_counter() - t)
        process.kill()
    return statistics.median(starts), statistics.median(pythons)


def run_bench(env_name=None, config=None, backend=None, protocol=None, quick=False):
    """Run every measurement against one environment; return the figures as a dict."""
    if env_name is None:
        env_name, config = "bench", {"environments": {"bench": {}}}
    config, provider, env = prepare(env_name, config, backend)
    noop_calls = 200 if quick else 2000
    frame_reps = 3 if quick else 10
    start_reps = 2 if quick else 5

    pipe = PipeReference()
    remote_env = start(config, provider, env, protocol)
    try:
        noop = lambda: remote_env.call(TARGETS + ":noop")  # noqa: E731
        _timed(noop, 200)
        pipe.round_trips(200)
        ours, theirs = [], []
        for _ in range(NOOP_BLOCKS):
            ours += _timed(noop, noop_calls // NOOP_BLOCKS)
            theirs += pipe.round_trips(noop_calls // NOOP_BLOCKS)

        numpy_frames = remote_env.call(TARGETS + ":has_numpy")
        frame = remote_env.call(TARGETS + ":frame")
        memcpy = _memcpy(frame)
        nbytes = sum(memoryview(p).nbytes for p in frame)
        to_host, to_worker, copies = [], [], []
        get_frame = lambda: remote_env.call(TARGETS + ":frame")  # noqa: E731
        send_frame = lambda: remote_env.call(TARGETS + ":consume", frame)  # noqa: E731
        get_frame(), send_frame()
        for _ in range(frame_reps):
            to_host += _timed(get_frame, 1)
            copies += _timed(memcpy, 1)
            to_worker += _timed(send_frame, 1)
            copies += _timed(memcpy, 1)
        negotiated = remote_env.protocol
        worker_python = remote_env.worker_python
    finally:
        remote_env.close()
        pipe.close()
    start_s, python_s = measure_start(config, provider, env, protocol, start_reps)

    result = {
        "protocol": negotiated,
        "backend": provider.name,
        "worker_python": worker_python,
        "noop_us_median": statistics.median(ours) * 1e6,
        "noop_us_p99": _percentile(ours, 0.99) * 1e6,
        "pipe_noop_us_median": statistics.median(theirs) * 1e6,
        "frame_mb": nbytes / 1e6,
        "frame_is_numpy": numpy_frames,
        "frame_to_host_ms": _ms(to_host),
        "frame_to_worker_ms": _ms(to_worker),
        "memcpy_ms": _ms(copies),
        "start_ms": start_s * 1e3,
        "python_start_ms": python_s * 1e3,
    }
    result["ratios"] = {
        "noop_vs_pipe": result["noop_us_median"] / result["pipe_noop_us_median"],
        "frame_to_host_vs_memcpy": result["frame_to_host_ms"] / result["memcpy_ms"],
        "frame_to_worker_vs_memcpy": result["frame_to_worker_ms"] / result["memcpy_ms"],
        "start_vs_python_start": result["start_ms"] / result["python_start_ms"],
    }
    return result


def format_report(result):
    """Human-readable lines for ``nbcore bench`` without ``--json``."""
    r, x = result, result["ratios"]
    return "\n".join([
        "backend %s, protocol %s, worker Python %s" % (r["backend"], r["protocol"], r["worker_python"]),
        "no-op call      median %8.1f us  p99 %8.1f us   %.2fx Pipe (%.1f us)" % (
            r["noop_us_median"], r["noop_us_p99"], x["noop_vs_pipe"], r["pipe_noop_us_median"]),
        "frame to host   %8.2f ms  %.2fx memcpy (%.2f ms for %.1f MB)" % (
            r["frame_to_host_ms"], x["frame_to_host_vs_memcpy"], r["memcpy_ms"], r["frame_mb"]),
        "frame to worker %8.2f ms  %.2fx memcpy" % (r["frame_to_worker_ms"], x["frame_to_worker_vs_memcpy"]),
        "start           %8.1f ms  %.2fx python -c pass (%.1f ms)" % (
            r["start_ms"], x["start_vs_python_start"], r["python_start_ms"]),
    ])
