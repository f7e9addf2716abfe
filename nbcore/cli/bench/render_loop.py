"""The render loop: frames/s of a worker generator yielding rendered frames, beside the same generator run
in-process and beside the floors of the loop in-process (one copy into shared memory, a loopback socket,
rendering in shared memory)."""
import mmap
import statistics
import time

from ...worker import bench_targets
from .references import TARGETS, SocketReference

#: The torch render loop's worker-side module (:mod:`nbcore.worker.bench_torch`).
TORCH_TARGETS = "nbcore.worker.bench_torch"
#: Frames per render loop (``--quick``: a third).
RENDER_FRAMES = 30
#: Items the render loop's worker generator makes ahead in its ``run_ahead`` rounds.
RUN_AHEAD = 1


def _loop_seconds(frames):
    clock = time.perf_counter
    t = clock()
    for frame in frames:
        memoryview(frame).nbytes  # what a consumer of the frame does at the least: look at it
    return clock() - t


def _copied_once(frames, target):
    """The generator ``frames``, each frame also copied into ``target`` (one memmove, as a transfer must)."""
    for frame in frames:
        view = memoryview(frame).cast("B")
        target[:view.nbytes] = view
        yield frame


def _sent_through(frames, sockets):
    """The generator ``frames``, each frame also sent through ``sockets`` (a :class:`SocketReference`)."""
    for frame in frames:
        sockets.send(frame)
        yield frame


def measure_render_loop(remote_env, numpy_frames, count, rounds):
    """Frames/s of the worker's render loop over the connection and in this process, plain and allocated;
    for plain frames also the two floors of the loop in this process: each frame copied once into an
    already-touched shared mapping, and each frame sent through a bare loopback TCP socket; for allocated
    frames the floor of rendering in this process into already-touched shared mappings (two, in turn)."""
    bench_targets.use_numpy(numpy_frames)
    nbytes = bench_targets.ITEMSIZE * bench_targets.RENDER_SHAPE[0] * bench_targets.RENDER_SHAPE[1] \
        * bench_targets.RENDER_SHAPE[2]
    mappings = [mmap.mmap(-1, nbytes) for _ in range(2)]
    for shared in mappings:
        shared[:] = bytes(nbytes)  # touched once, as a reused shared memory segment is
    target = memoryview(mappings[0])
    sockets = SocketReference(nbytes)
    try:
        result = {}
        for allocated in (False, True):
            kind = "allocated" if allocated else "plain"
            remote = lambda ahead: remote_env.call(TARGETS + ":render_loop", count, allocated, ahead)  # noqa: E731
            local = lambda: bench_targets.in_process(bench_targets.render_loop(count, allocated))  # noqa: E731
            floors = [("in_process_shared_fps",
                       lambda: bench_targets.in_process(bench_targets.render_into(count, mappings)))] if allocated else [
                ("in_process_one_copy_fps", lambda: _copied_once(local(), target)),
                ("in_process_socket_fps", lambda: _sent_through(local(), sockets))]
            _loop_seconds(remote(0)), _loop_seconds(remote(RUN_AHEAD)), _loop_seconds(local())  # warm up
            over, ahead, here = [], [], []
            below = {key: [] for key, _ in floors}
            for index in range(rounds):
                over.append(count / _loop_seconds(remote(0)))
                ahead.append(count / _loop_seconds(remote(RUN_AHEAD)))
                here.append(count / _loop_seconds(local()))
                if floors:  # the floors take turns, one a round: they vary less than the loops through the worker
                    key, floor = floors[index % len(floors)]
                    below[key].append(count / _loop_seconds(floor()))
            result[kind] = {"fps": statistics.median(over), "run_ahead_fps": statistics.median(ahead),
                            "in_process_fps": statistics.median(here)}
            result[kind].update({key: statistics.median(values) for key, values in below.items()})
        return result
    finally:
        sockets.close()
        target.release()
        for shared in mappings:
            shared.close()
        bench_targets.use_numpy(False)  # drops the host's scene


def measure_torch_render_loop(remote_env, numpy_frames, count, rounds):
    """Frames/s of the worker's torch render loop (:mod:`nbcore.worker.bench_torch`) over the connection and in
    the worker's process, plain and allocated; None when the environment has no torch or either end no numpy."""
    version = remote_env.call(TORCH_TARGETS + ":torch_version") if numpy_frames else None
    if version is None:
        return None
    result = {"torch": version}
    for allocated in (False, True):
        remote = lambda ahead: remote_env.call(TORCH_TARGETS + ":render_loop", count, allocated, ahead)  # noqa: E731
        local = lambda: remote_env.call(TORCH_TARGETS + ":in_process_fps", count, allocated)  # noqa: E731
        _loop_seconds(remote(0)), _loop_seconds(remote(RUN_AHEAD)), local()  # warm up
        over, ahead, here = [], [], []
        for _ in range(rounds):
            over.append(count / _loop_seconds(remote(0)))
            ahead.append(count / _loop_seconds(remote(RUN_AHEAD)))
            here.append(local())
        result["allocated" if allocated else "plain"] = {
            "fps": statistics.median(over), "run_ahead_fps": statistics.median(ahead),
            "in_process_fps": statistics.median(here)}
    return result
