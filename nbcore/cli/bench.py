"""``nbcore bench``: latency, frame transfer and start time, each beside a same-run reference.

References are measured interleaved with the protocol (alternating blocks) so
that machine noise hits both alike: a bare ``multiprocessing.Pipe`` round trip
for the no-op, a memcpy of the same bytes for the frame, and the environment's
interpreter running ``python -c pass`` for the start time.

The no-op alternates :data:`NOOP_BLOCKS` blocks of calls with as many blocks
of Pipe round trips.  The frame figures (to host, to host built with
``allocate_ndarray``, to worker) take turns with the memcpy in blocks:
memcpy, frame to host, memcpy, allocated frame to host, memcpy, frame to
worker, and again.  Each block of calls opens with one call timed apart: it
follows 33 MB of memcpy, so it finds the caches flushed and the peer asleep.
Those first calls make the ``first_call_ms`` figures (what a call costs in a
loop that does heavy work between calls); the :data:`FRAME_BLOCK` calls after
it make the main figures (the steady cost of a call).  Every figure is a
median over single calls.
"""
import multiprocessing
import statistics
import time
from pathlib import Path

from ..plugin.backend import WorkerLaunch
from ..errors import UserError
from ..host.launch import prepare, staged_worker_path, start
from ..host.selection import default_protocols
from ..plugin.registry import get_registry
from ..worker.bench_targets import has_numpy, make_blob

TARGETS = "nbcore.worker.bench_targets"
NOOP_BLOCKS = 10
#: Calls per block in the frame measurements (each kind and the memcpy take turns), after the first call.
FRAME_BLOCK = 5
#: Message sizes of ``--sizes``: 1 KB .. 256 MB, by factors of 4.
SWEEP_SIZES = tuple(1024 * 4 ** i for i in range(10))
#: Protocol lists compared by ``--sizes``.


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
    frame_rounds = 2 if quick else 6
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

        numpy_frames = remote_env.call(TARGETS + ":use_numpy", has_numpy())
        frame = remote_env.call(TARGETS + ":frame")
        if not numpy_frames:  # what arrived are plain buffers: send back buffers of the same sizes
            frame = [make_blob(memoryview(part).nbytes, False) for part in frame]
        memcpy = _memcpy(frame)
        nbytes = sum(memoryview(p).nbytes for p in frame)
        kinds = {
            "frame_to_host": lambda: remote_env.call(TARGETS + ":frame"),
            "frame_to_host_prealloc": lambda: remote_env.call(TARGETS + ":allocated_frame"),
            "frame_to_worker": lambda: remote_env.call(TARGETS + ":consume", frame),
        }
        steady = {kind: [] for kind in kinds}
        first = {kind: [] for kind in kinds}
        copies = []
        for fn in kinds.values():
            fn()
        for _ in range(frame_rounds):
            for kind, fn in kinds.items():
                copies += _timed(memcpy, FRAME_BLOCK)
                block = _timed(fn, 1 + FRAME_BLOCK)
                first[kind].append(block[0])
                steady[kind] += block[1:]
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
        "frame_to_host_ms": _ms(steady["frame_to_host"]),
        "frame_to_host_prealloc_ms": _ms(steady["frame_to_host_prealloc"]),
        "frame_to_worker_ms": _ms(steady["frame_to_worker"]),
        "memcpy_ms": _ms(copies),
        "first_call_ms": {kind: _ms(times) for kind, times in first.items()},
        "start_ms": start_s * 1e3,
        "python_start_ms": python_s * 1e3,
    }
    result["ratios"] = {
        "noop_vs_pipe": result["noop_us_median"] / result["pipe_noop_us_median"],
        "frame_to_host_vs_memcpy": result["frame_to_host_ms"] / result["memcpy_ms"],
        "frame_to_host_prealloc_vs_memcpy": result["frame_to_host_prealloc_ms"] / result["memcpy_ms"],
        "frame_to_worker_vs_memcpy": result["frame_to_worker_ms"] / result["memcpy_ms"],
        "start_vs_python_start": result["start_ms"] / result["python_start_ms"],
    }
    return result


def _sweep_reps(nbytes, quick):
    budget = (64 if quick else 512) << 20
    return max(3, min(20 if quick else 200, budget // nbytes))


def sweep_protocol_lists(registry):
    """The protocol lists the sweep runs: the preferred fallback alone, then with each installed upgrade."""
    fallback = default_protocols(registry).split(",")[0]
    return [fallback] + ["%s,%s" % (fallback, p.name) for p in registry.upgrade_protocols()]


def run_sweep(env_name=None, config=None, backend=None, quick=False, sizes=SWEEP_SIZES, protocols=None):
    """Median transfer time per message size, worker->host and host->worker, for each protocol list
    (default: :func:`sweep_protocol_lists`).

    The memcpy reference of each size is measured right after that size's transfers.
    The result is keyed by the protocol list asked for; each entry says what was
    negotiated (a list whose upgrade is not available here runs on its fallback).
    """
    if env_name is None:
        env_name, config = "bench", {"environments": {"bench": {}}}
    config, provider, env = prepare(env_name, config, backend)
    result = {"sizes": list(sizes), "protocols": {}}
    copies = {nbytes: [] for nbytes in sizes}
    for names in protocols or sweep_protocol_lists(get_registry()):
        remote_env = start(config, provider, env, names)
        try:
            entry = {"negotiated": remote_env.protocol, "to_host_ms": [], "to_worker_ms": []}
            numpy_blobs = remote_env.call(TARGETS + ":use_numpy", has_numpy())
            for nbytes in sizes:
                reps = _sweep_reps(nbytes, quick)
                payload = [make_blob(nbytes, numpy_blobs)]
                get = lambda: remote_env.call(TARGETS + ":blob", nbytes)  # noqa: E731
                put = lambda: remote_env.call(TARGETS + ":consume", payload)  # noqa: E731
                get(), put()
                entry["to_host_ms"].append(_ms(_timed(get, reps)))
                entry["to_worker_ms"].append(_ms(_timed(put, reps)))
                copies[nbytes] += _timed(_memcpy(payload), reps)
            result["protocols"][names] = entry
        finally:
            remote_env.close()
    result["memcpy_ms"] = [_ms(copies[nbytes]) for nbytes in sizes]
    return result


def _size_label(nbytes):
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            return "%g %s" % (nbytes / scale, unit)
    return "%d B" % nbytes


def _gbps(sizes, times_ms):
    return [n / (t / 1e3) / 1e9 for n, t in zip(sizes, times_ms)]


def format_sweep(sweep):
    """Throughput table of :func:`run_sweep` (GB/s)."""
    names = list(sweep["protocols"])
    columns = ["%s %s" % (n, d) for n in names for d in ("->host", "->worker")] + ["memcpy"]
    width = max(len(c) for c in columns)
    lines = ["%s: negotiated %s" % (n, sweep["protocols"][n]["negotiated"]) for n in names]
    lines.append("throughput GB/s   " + "  ".join("%*s" % (width, c) for c in columns))
    sizes = sweep["sizes"]
    series = []
    for name in names:
        series += [_gbps(sizes, sweep["protocols"][name]["to_host_ms"]),
                   _gbps(sizes, sweep["protocols"][name]["to_worker_ms"])]
    series.append(_gbps(sizes, sweep["memcpy_ms"]))
    for i, nbytes in enumerate(sizes):
        lines.append("%-16s  " % _size_label(nbytes) + "  ".join("%*.2f" % (width, s[i]) for s in series))
    return "\n".join(lines)


def plot_sweep(sweep, path):
    """Draw throughput against message size for each protocol and direction into ``path`` (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'nbcore[plot]'") from None
    sizes = sweep["sizes"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, entry in sweep["protocols"].items():
        name = "%s (%s)" % (name, entry["negotiated"])
        line, = ax.plot(sizes, _gbps(sizes, entry["to_host_ms"]), marker="o", label=name + ", worker -> host")
        ax.plot(sizes, _gbps(sizes, entry["to_worker_ms"]), marker="s", linestyle="--", color=line.get_color(),
                label=name + ", host -> worker")
    ax.plot(sizes, _gbps(sizes, sweep["memcpy_ms"]), color="grey", linestyle=":", label="memcpy (reference)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([_size_label(n) for n in sizes], rotation=30)
    ax.set_xlabel("message size")
    ax.set_ylabel("throughput (GB/s, one call incl. round trip)")
    ax.set_title("nbcore: transfer throughput by protocol")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_report(result):
    """Human-readable lines for ``nbcore bench`` without ``--json``."""
    r, x = result, result["ratios"]
    allocator = "allocate_ndarray" if r["frame_is_numpy"] else "allocate_buffer"
    return "\n".join([
        "backend %s, protocol %s, worker Python %s" % (r["backend"], r["protocol"], r["worker_python"]),
        "no-op call      median %8.1f us  p99 %8.1f us   %.2fx Pipe (%.1f us)" % (
            r["noop_us_median"], r["noop_us_p99"], x["noop_vs_pipe"], r["pipe_noop_us_median"]),
        "frame to host   %8.2f ms  %.2fx memcpy (%.2f ms for %.1f MB)" % (
            r["frame_to_host_ms"], x["frame_to_host_vs_memcpy"], r["memcpy_ms"], r["frame_mb"]),
        "frame to host, %s %6.3f ms  %.3fx memcpy" % (
            allocator, r["frame_to_host_prealloc_ms"], x["frame_to_host_prealloc_vs_memcpy"]),
        "frame to worker %8.2f ms  %.2fx memcpy" % (r["frame_to_worker_ms"], x["frame_to_worker_vs_memcpy"]),
        "first call after a memcpy block: frame to host %.2f ms, %s %.3f ms, frame to worker %.2f ms" % (
            r["first_call_ms"]["frame_to_host"], allocator, r["first_call_ms"]["frame_to_host_prealloc"],
            r["first_call_ms"]["frame_to_worker"]),
        "start           %8.1f ms  %.2fx python -c pass (%.1f ms)" % (
            r["start_ms"], x["start_vs_python_start"], r["python_start_ms"]),
    ])
