"""Running the bench against one environment: every figure (:func:`run_bench`), and the transfer sweep over
message sizes (:func:`run_sweep`)."""
import statistics

from ...host.launch import prepare, start
from ...host.selection import default_protocols
from ...plugin.registry import get_registry
from ...worker import bench_targets
from ...worker.bench_targets import has_numpy, make_blob
from .opening import measure_open, measure_start
from .references import (TARGETS, PipeReference, SocketReference, median_ms, memcpy_of, memcpy_to_shared_of,
                         percentile, timed)
from .render_loop import RENDER_FRAMES, measure_render_loop, measure_torch_render_loop

NOOP_BLOCKS = 10
#: Calls per block in the frame measurements (each kind and the memcpy take turns), after the first call.
FRAME_BLOCK = 5
#: Message sizes of ``--sizes``: 1 KB .. 256 MB, by factors of 4.
SWEEP_SIZES = tuple(1024 * 4 ** i for i in range(10))


def run_bench(env_name=None, config=None, backend=None, protocol=None, quick=False):
    """Run every measurement against one environment; return the figures as a dict."""
    if env_name is None:
        env_name, config = "bench", {"environments": {"bench": {}}}
    config_arg = config
    config, provider, env = prepare(env_name, config, backend)
    noop_calls = 200 if quick else 2000
    frame_rounds = 2 if quick else 6
    start_reps = 2 if quick else 5

    pipe = PipeReference()
    remote_env = start(config, provider, env, protocol)
    try:
        noop = lambda: remote_env.call(TARGETS + ":noop")  # noqa: E731
        timed(noop, 200)
        pipe.round_trips(200)
        ours, theirs = [], []
        for _ in range(NOOP_BLOCKS):
            ours += timed(noop, noop_calls // NOOP_BLOCKS)
            theirs += pipe.round_trips(noop_calls // NOOP_BLOCKS)

        numpy_frames = remote_env.call(TARGETS + ":use_numpy", has_numpy())
        frame = remote_env.call(TARGETS + ":frame")
        if not numpy_frames:  # what arrived are plain buffers: send back buffers of the same sizes
            frame = [make_blob(memoryview(part).nbytes, False) for part in frame]
        memcpy = memcpy_of(frame)
        memcpy_shared = memcpy_to_shared_of(frame)
        nbytes = sum(memoryview(p).nbytes for p in frame)
        kinds = {
            "frame_to_host": lambda: remote_env.call(TARGETS + ":frame"),
            "frame_to_host_prealloc": lambda: remote_env.call(TARGETS + ":allocated_frame"),
            "frame_to_worker": lambda: remote_env.call(TARGETS + ":consume", frame),
        }
        steady = {kind: [] for kind in kinds}
        first = {kind: [] for kind in kinds}
        copies, shared_copies = [], []
        sockets = SocketReference(nbytes)
        socket_to_host, socket_to_peer = [], []
        try:
            for fn in kinds.values():
                fn()
            for _ in range(frame_rounds):
                for kind, fn in kinds.items():
                    copies += timed(memcpy, FRAME_BLOCK)
                    if memcpy_shared is not None:
                        shared_copies += timed(memcpy_shared, FRAME_BLOCK)
                    block = timed(fn, 1 + FRAME_BLOCK)
                    first[kind].append(block[0])
                    steady[kind] += block[1:]
                socket_to_host += timed(sockets.to_host, FRAME_BLOCK)
                socket_to_peer += timed(sockets.to_peer, FRAME_BLOCK)
        finally:
            sockets.close()
        del frame, memcpy, memcpy_shared
        loop = measure_render_loop(remote_env, numpy_frames, RENDER_FRAMES // 3 if quick else RENDER_FRAMES,
                                   frame_rounds)
        torch_loop = measure_torch_render_loop(remote_env, numpy_frames,
                                               RENDER_FRAMES // 3 if quick else RENDER_FRAMES, frame_rounds)
        negotiated = remote_env.protocol
        worker_python = remote_env.worker_python
    finally:
        remote_env.close()
        pipe.close()
    start_s, python_s = measure_start(config, provider, env, protocol, start_reps)
    # as the user asked: without --backend the fresh processes choose the backend themselves, as a user's script does
    opening = measure_open(env.name, config_arg, provider, env, backend, protocol, start_reps)

    result = {
        "protocol": negotiated,
        "backend": provider.name,
        "worker_python": worker_python,
        "noop_us_median": statistics.median(ours) * 1e6,
        "noop_us_p99": percentile(ours, 0.99) * 1e6,
        "pipe_noop_us_median": statistics.median(theirs) * 1e6,
        "frame_mb": nbytes / 1e6,
        "frame_is_numpy": numpy_frames,
        "frame_to_host_ms": median_ms(steady["frame_to_host"]),
        "frame_to_host_prealloc_ms": median_ms(steady["frame_to_host_prealloc"]),
        "frame_to_worker_ms": median_ms(steady["frame_to_worker"]),
        "memcpy_ms": median_ms(copies),
        "first_call_ms": {kind: median_ms(times) for kind, times in first.items()},
        "memcpy_to_shared_ms": median_ms(shared_copies) if shared_copies else None,
        "tcp_socket_ms": {"to_host": median_ms(socket_to_host), "to_peer": median_ms(socket_to_peer)},
        "start_ms": start_s * 1e3,
        "python_start_ms": python_s * 1e3,
        "render_loop": loop,
        "render_frame_mb": 4 * bench_targets.RENDER_SHAPE[0] * bench_targets.RENDER_SHAPE[1] * 3 / 1e6,
        "render_loop_torch": torch_loop,
    }
    result.update({key: opening[key] for key in ("open_to_first_result_ms", "open_phases_ms", "cli_call_ms",
                                                  "host_python_start_ms", "bare_open_ms")})
    result["open_python_start_ms"] = opening["python_start_ms"]
    result["ratios"] = {
        "noop_vs_pipe": result["noop_us_median"] / result["pipe_noop_us_median"],
        "frame_to_host_vs_memcpy": result["frame_to_host_ms"] / result["memcpy_ms"],
        "frame_to_host_prealloc_vs_memcpy": result["frame_to_host_prealloc_ms"] / result["memcpy_ms"],
        "frame_to_worker_vs_memcpy": result["frame_to_worker_ms"] / result["memcpy_ms"],
        "frame_to_host_vs_tcp_socket": result["frame_to_host_ms"] / result["tcp_socket_ms"]["to_host"],
        "frame_to_worker_vs_tcp_socket": result["frame_to_worker_ms"] / result["tcp_socket_ms"]["to_peer"],
        "start_vs_python_start": result["start_ms"] / result["python_start_ms"],
        "open_to_first_result_vs_python_start": result["open_to_first_result_ms"] / result["open_python_start_ms"],
        "cli_call_vs_pythons_start": result["cli_call_ms"] / (result["open_python_start_ms"]
                                                              + result["host_python_start_ms"]),
        "render_loop_vs_in_process": loop["plain"]["fps"] / loop["plain"]["in_process_fps"],
        "render_loop_allocated_vs_in_process": loop["allocated"]["fps"] / loop["allocated"]["in_process_fps"],
        "render_loop_run_ahead_vs_in_process": loop["plain"]["run_ahead_fps"] / loop["plain"]["in_process_fps"],
        "render_loop_allocated_run_ahead_vs_in_process": (loop["allocated"]["run_ahead_fps"]
                                                          / loop["allocated"]["in_process_fps"]),
    }
    for kind, infix, floor in (("plain", "", "one_copy"), ("plain", "", "socket"), ("allocated", "_allocated", "shared")):
        reference = loop[kind]["in_process_%s_fps" % floor]
        result["ratios"]["render_loop%s_vs_in_process_%s" % (infix, floor)] = loop[kind]["fps"] / reference
        result["ratios"]["render_loop%s_run_ahead_vs_in_process_%s" % (infix, floor)] = (loop[kind]["run_ahead_fps"]
                                                                                         / reference)
    if torch_loop is not None:
        for kind, infix in (("plain", ""), ("allocated", "_allocated")):
            figures = torch_loop[kind]
            result["ratios"]["render_loop_torch%s_vs_in_process" % infix] = figures["fps"] / figures["in_process_fps"]
            result["ratios"]["render_loop_torch%s_run_ahead_vs_in_process" % infix] = (figures["run_ahead_fps"]
                                                                                     / figures["in_process_fps"])
    if result["bare_open_ms"] is not None:
        result["ratios"]["open_to_first_result_vs_bare_open"] = result["open_to_first_result_ms"] / result["bare_open_ms"]
        result["ratios"]["bare_open_vs_python_start"] = result["bare_open_ms"] / result["open_python_start_ms"]
    if shared_copies:
        result["ratios"]["frame_to_worker_vs_memcpy_to_shared"] = (result["frame_to_worker_ms"]
                                                                   / result["memcpy_to_shared_ms"])
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
                entry["to_host_ms"].append(median_ms(timed(get, reps)))
                entry["to_worker_ms"].append(median_ms(timed(put, reps)))
                copies[nbytes] += timed(memcpy_of(payload), reps)
            result["protocols"][names] = entry
        finally:
            remote_env.close()
    result["memcpy_ms"] = [median_ms(copies[nbytes]) for nbytes in sizes]
    return result
