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

Three figures time what a user waits for, each beside its reference:

- **open to first result**: a fresh host process imports nbcore, opens the
  environment (``open_backend``) and gets one call's result, timed phase by
  phase (import, plugin discovery, config and store, worker start and
  connection, first call), beside the environment's ``python -c pass``; and
  the whole ``nbcore call ENV ...`` command, beside the host's ``python -c pass``
  plus the environment's (the two interpreters it starts); and beside the
  least any open could cost, a **bare open**: a fresh host process of the
  standard library alone (subprocess, socket, pickle) starting the
  environment's Python, which connects back and answers one pickled call.
- **render loop**: frames/s of a worker generator yielding :data:`RENDER_FRAMES`
  rendered 1080p float32 frames, as fresh arrays and as ``allocate_ndarray``
  frames, one item per ``next()`` and wrapped in ``run_ahead`` (:data:`RUN_AHEAD`
  items ahead), beside the same generator run in the host process (alternating rounds); and, when the
  environment has torch, the same for a compute-bound torch render (:mod:`nbcore.worker.bench_torch`),
  whose in-process reference runs in the worker's process.
- **memcpy into shared memory**: the frame reference taken again into an
  already-touched shared mapping (4 KiB pages unless the system gives shared
  memory huge pages), the floor of any protocol that copies into shared memory.
- **a bare loopback TCP socket**: the frame's bytes sent through a TCP socket to
  a child process and back (two kernel copies each way), the floor of any
  protocol over loopback TCP.
"""
import json
import mmap
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..plugin.backend import WorkerLaunch
from ..errors import UserError
from ..host.launch import prepare, staged_worker_path, start
from ..host.selection import default_protocols
from ..plugin.registry import get_registry
from ..worker import bench_targets
from ..worker.bench_targets import has_numpy, make_blob
from ..worker.framing import configure_socket

TARGETS = "nbcore.worker.bench_targets"
TORCH_TARGETS = "nbcore.worker.bench_torch"
NOOP_BLOCKS = 10
#: Calls per block in the frame measurements (each kind and the memcpy take turns), after the first call.
FRAME_BLOCK = 5
#: Message sizes of ``--sizes``: 1 KB .. 256 MB, by factors of 4.
SWEEP_SIZES = tuple(1024 * 4 ** i for i in range(10))
#: Frames per render loop (``--quick``: a third).
RENDER_FRAMES = 30
#: Items the render loop's worker generator makes ahead in its ``run_ahead`` rounds.
RUN_AHEAD = 1
#: Runs in a fresh host process: open the environment phase by phase, call, print the phases' seconds.
OPEN_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from nbcore.host.launch import prepare, start
t1 = time.perf_counter()
from nbcore.plugin.registry import get_registry
get_registry()
t2 = time.perf_counter()
name, config, backend, protocol = json.loads(sys.argv[1])
config, provider, env = prepare(name, config, backend)
t3 = time.perf_counter()
remote_env = start(config, provider, env, protocol)
t4 = time.perf_counter()
remote_env.call("nbcore.worker.bench_targets:noop")
t5 = time.perf_counter()
remote_env.close()
print(json.dumps({"import": t1 - t0, "plugins": t2 - t1, "config_and_store": t3 - t2, "worker": t4 - t3,
                  "first_call": t5 - t4}))
"""

#: Runs in a fresh host process: the least any open could do, timed as :data:`OPEN_CHILD` times nbcore's. A bare
#: host (subprocess, socket and pickle; no framework) starts the environment's Python on :data:`BARE_WORKER`,
#: sends it one pickled call on the connection it makes back to the listening socket this process was given,
#: and prints the seconds until the answer.
BARE_OPEN_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import pickle, socket, subprocess
listener_fd, argv, env, cwd = json.loads(sys.argv[1])
listener = socket.socket(fileno=listener_fd)
listener.settimeout(0.1)
process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
while True:
    try:
        connection, _ = listener.accept()
        break
    except socket.timeout:
        if process.poll() is not None:
            sys.exit("the bare worker exited with code %d before it connected" % process.returncode)
connection.settimeout(None)
stream = connection.makefile("rwb")
pickle.dump(("call", "noop"), stream)
stream.flush()
pickle.load(stream)
t1 = time.perf_counter()
process.wait()
print(t1 - t0)
"""
#: The environment's side of :data:`BARE_OPEN_CHILD`: connect back, answer one call.
BARE_WORKER = """
import os, pickle, socket
stream = socket.create_connection(("127.0.0.1", int(os.environ["NBCORE_BENCH_PORT"]))).makefile("rwb")
pickle.dump(pickle.load(stream), stream)
stream.flush()
"""


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


def _socket_peer(port, nbytes):
    """The child of :class:`SocketReference`: sends ``nbytes`` after a ``g``, reads them after a ``p``."""
    sock = socket.create_connection(("127.0.0.1", port))
    configure_socket(sock)
    buffer = memoryview(bytearray(b"\1" * nbytes))
    while True:
        op = sock.recv(1)
        if op == b"g":
            sock.sendall(buffer)
        elif op == b"p":
            _recv_all(sock, buffer)
            sock.sendall(b"k")
        else:
            break


def _recv_all(sock, target):
    pos = 0
    while pos < target.nbytes:
        pos += sock.recv_into(target[pos:], target.nbytes - pos, socket.MSG_WAITALL)


class SocketReference:
    """A child process moving ``nbytes`` through a bare loopback TCP socket, set up as tcp-pickle sets up its
    own (the floor of any protocol over loopback TCP: the kernel copies the bytes in and out)."""

    def __init__(self, nbytes):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(60)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_socket_peer, args=(listener.getsockname()[1], nbytes), daemon=True)
        self.process.start()
        try:
            self.sock = listener.accept()[0]
        finally:
            listener.close()
        self.sock.settimeout(None)
        configure_socket(self.sock)
        self.buffer = memoryview(bytearray(b"\1" * nbytes))

    def to_host(self):
        self.sock.sendall(b"g")
        _recv_all(self.sock, self.buffer)

    def to_peer(self):
        self.send(self.buffer)

    def send(self, data):
        """Send ``data`` (``nbytes`` bytes) to the peer and wait for its answer."""
        self.sock.sendall(b"p")
        self.sock.sendall(data)
        self.sock.recv(1)

    def close(self):
        self.sock.close()
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


def _memcpy_to_shared(frame):
    """Like :func:`_memcpy`, into an anonymous shared mapping touched once (the page size shared memory has)."""
    try:
        import numpy as np
    except ImportError:
        return None
    sources = [np.asarray(memoryview(p)).view(np.uint8).reshape(-1) for p in frame]
    blocks = [mmap.mmap(-1, s.nbytes) for s in sources]
    targets = [np.frombuffer(b, np.uint8) for b in blocks]

    def copy():
        for s, t in zip(sources, targets):
            np.copyto(t, s)
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


def _open_config(config):
    """``config`` as the fresh host process and ``nbcore call`` take it: an absolute path, a dict, or None."""
    if config is None or isinstance(config, dict):
        return config
    return os.path.abspath(str(config))


def _bare_open_argv(provider, env, listener):
    """The fresh host process of :data:`BARE_OPEN_CHILD` for ``env`` and the listening socket ``listener`` (passed
    on to it), or None when the backend runs no commands."""
    if "command" not in provider.features:
        return None
    command = provider.command(env, [provider.worker_python(env), "-c", BARE_WORKER],
                               {"NBCORE_BENCH_PORT": str(listener.getsockname()[1])}, None)
    return [sys.executable, "-c", BARE_OPEN_CHILD,
            json.dumps([listener.fileno(), command.argv, command.env, command.cwd])]


def measure_open(env_name, config, provider, env, backend, protocol, count):
    """Medians of open-to-first-result in a fresh host process (with its phases), of ``nbcore call``, and of
    their references: the environment's ``python -c pass``, the host's, and the same open by a bare host and
    worker (:data:`BARE_OPEN_CHILD`, on backends that run commands) (all interleaved)."""
    config = _open_config(config)
    child_argv = [sys.executable, "-c", OPEN_CHILD, json.dumps([env_name, config, backend, protocol])]
    phases, calls, pythons, host_pythons, bare_opens = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="nbcore-bench-") as folder, \
            socket.create_server(("127.0.0.1", 0)) as listener:
        bare_argv = _bare_open_argv(provider, env, listener)
        if isinstance(config, dict):  # nbcore call reads a file: JSON is YAML
            path = os.path.join(folder, "nbcore.yaml")
            with open(path, "w") as out:
                json.dump(config, out)
            config = path
        cli_argv = [sys.executable, "-m", "nbcore", "call", env_name, TARGETS + ":noop"]
        cli_argv += (["--backend", backend] if backend else []) + (["-c", config] if config else [])
        cli_argv += ["--protocol", protocol] if protocol else []
        for _ in range(count):
            out = subprocess.run(child_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
            if out.returncode != 0:
                raise UserError("the open-to-first-result run failed: %s" % out.stderr.decode(errors="replace")
                                .strip().splitlines()[-1:])
            phases.append(json.loads(out.stdout))
            t = time.perf_counter()
            out = subprocess.run(cli_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            calls.append(time.perf_counter() - t)
            if out.returncode != 0:
                raise UserError("nbcore call failed: %s" % out.stderr.decode(errors="replace").strip())
            launch = WorkerLaunch(worker_path=staged_worker_path(), cwd=Path.cwd(), variables={},
                                  python_args=["-c", "pass"])
            t = time.perf_counter()
            process = provider.start_worker(env, launch)
            process.wait(60)
            pythons.append(time.perf_counter() - t)
            process.kill()
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=False)
            host_pythons.append(time.perf_counter() - t)
            if bare_argv is not None:
                out = subprocess.run(bare_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                                     pass_fds=(listener.fileno(),))
                if out.returncode != 0:
                    raise UserError("the bare open failed: %s" % out.stderr.decode(errors="replace")
                                    .strip().splitlines()[-1:])
                bare_opens.append(float(out.stdout))
    phase_ms = {name: _ms([p[name] for p in phases]) for name in phases[0]}
    return {
        "open_to_first_result_ms": _ms([sum(p.values()) for p in phases]),
        "open_phases_ms": phase_ms,
        "cli_call_ms": _ms(calls),
        "python_start_ms": _ms(pythons),
        "host_python_start_ms": _ms(host_pythons),
        "bare_open_ms": _ms(bare_opens) if bare_opens else None,
    }


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
        memcpy_shared = _memcpy_to_shared(frame)
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
                    copies += _timed(memcpy, FRAME_BLOCK)
                    if memcpy_shared is not None:
                        shared_copies += _timed(memcpy_shared, FRAME_BLOCK)
                    block = _timed(fn, 1 + FRAME_BLOCK)
                    first[kind].append(block[0])
                    steady[kind] += block[1:]
                socket_to_host += _timed(sockets.to_host, FRAME_BLOCK)
                socket_to_peer += _timed(sockets.to_peer, FRAME_BLOCK)
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
        "noop_us_p99": _percentile(ours, 0.99) * 1e6,
        "pipe_noop_us_median": statistics.median(theirs) * 1e6,
        "frame_mb": nbytes / 1e6,
        "frame_is_numpy": numpy_frames,
        "frame_to_host_ms": _ms(steady["frame_to_host"]),
        "frame_to_host_prealloc_ms": _ms(steady["frame_to_host_prealloc"]),
        "frame_to_worker_ms": _ms(steady["frame_to_worker"]),
        "memcpy_ms": _ms(copies),
        "first_call_ms": {kind: _ms(times) for kind, times in first.items()},
        "memcpy_to_shared_ms": _ms(shared_copies) if shared_copies else None,
        "tcp_socket_ms": {"to_host": _ms(socket_to_host), "to_peer": _ms(socket_to_peer)},
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


def plot_sweep(sweep, path, bench=None):
    """Draw throughput against message size for each protocol and direction into ``path`` (needs matplotlib);
    with ``bench`` (a :func:`run_bench` result), also open to first result by phase and the render loop."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'nbcore[plot]'") from None
    sizes = sweep["sizes"]
    if bench is None:
        fig, ax = plt.subplots(figsize=(9, 5.5))
    else:
        fig = plt.figure(figsize=(13, 9))
        grid = fig.add_gridspec(2, 2, height_ratios=(3, 2))
        ax = fig.add_subplot(grid[0, :])
        _plot_open(fig.add_subplot(grid[1, 0]), bench)
        _plot_render_loop(fig.add_subplot(grid[1, 1]), bench)
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


def _plot_open(ax, bench):
    """Stacked bars: the phases of open to first result, beside the bare open and the environment's python -c pass."""
    left = 0.0
    for name, ms in bench["open_phases_ms"].items():
        ax.barh("open to first result", ms, left=left, label=name.replace("_", " "))
        left += ms
    ax.barh("nbcore call", bench["cli_call_ms"], color="grey")
    if bench.get("bare_open_ms") is not None:
        ax.barh("bare open (no framework)", bench["bare_open_ms"], color="dimgrey")
    ax.barh("python -c pass (env)", bench["open_python_start_ms"], color="black")
    ax.set_xlabel("ms (fresh host process)")
    ax.set_title("opening an environment (%s, %s)" % (bench["backend"], bench["protocol"]))
    ax.legend(fontsize="small")


def _plot_render_loop(ax, bench):
    """Grouped bars: the render loops' frames/s through the worker, with and without run-ahead, as a ratio to
    the same loop in-process; plain and allocated, with numpy and, when the environment has it, torch; lines
    across the numpy plain group mark its floors (the loop in-process plus one copy, or plus the socket)."""
    loops = [(bench["render_loop"], "numpy")]
    if bench.get("render_loop_torch") is not None:
        loops.append((bench["render_loop_torch"], "torch"))
    groups = [(loop[kind], "%s\n%s\n%.0f frames/s in-process" % (name, label, loop[kind]["in_process_fps"]))
              for loop, name in loops for kind, label in (("plain", "fresh arrays"), ("allocated", "allocate_ndarray"))]
    bars = (("fps", "worker generator"), ("run_ahead_fps", "worker generator, run_ahead(%d)" % RUN_AHEAD))
    for offset, (key, label) in enumerate(bars):
        ax.bar([i + 0.4 * offset for i in range(len(groups))],
               [figures[key] / figures["in_process_fps"] for figures, _ in groups], width=0.4, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, label="in-process")
    floors = (("in_process_one_copy_fps", "in-process, each frame copied once into shared memory", "--"),
              ("in_process_socket_fps", "in-process, each frame sent through a loopback TCP socket", ":"),
              ("in_process_shared_fps", "in-process, each frame rendered in shared memory", "-."))
    for key, label, style in floors:
        at = [(i, figures[key] / figures["in_process_fps"]) for i, (figures, _) in enumerate(groups) if key in figures]
        for n, (i, ratio) in enumerate(at):
            ax.hlines(ratio, i - 0.25, i + 0.65, color="black", linestyles=style, label=None if n else label)
    ax.set_xticks([i + 0.2 for i in range(len(groups))])
    ax.set_xticklabels([label for _, label in groups], fontsize="x-small")
    ax.set_ylabel("frames/s, x in-process (%.1f MB frames)" % bench["render_frame_mb"])
    ax.set_title("render loop")
    ax.set_ylim(0, 1.75 * max([1.0] + [figures[key] / figures["in_process_fps"] for figures, _ in groups
                                      for key, _ in bars]))  # room for the legend
    ax.legend(fontsize="small", loc="upper left")


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
        "bare loopback TCP socket, the same bytes: to host %.2f ms, to peer %.2f ms; frame to host %.2fx it, "
        "frame to worker %.2fx it" % (r["tcp_socket_ms"]["to_host"], r["tcp_socket_ms"]["to_peer"],
                                      x["frame_to_host_vs_tcp_socket"], x["frame_to_worker_vs_tcp_socket"]),
        "first call after a memcpy block: frame to host %.2f ms, %s %.3f ms, frame to worker %.2f ms" % (
            r["first_call_ms"]["frame_to_host"], allocator, r["first_call_ms"]["frame_to_host_prealloc"],
            r["first_call_ms"]["frame_to_worker"]),
        "start           %8.1f ms  %.2fx python -c pass (%.1f ms)" % (
            r["start_ms"], x["start_vs_python_start"], r["python_start_ms"]),
        "open to first result, fresh host process %6.1f ms  %.2fx python -c pass (%.1f ms); %s" % (
            r["open_to_first_result_ms"], x["open_to_first_result_vs_python_start"], r["open_python_start_ms"],
            ", ".join("%s %.1f" % item for item in r["open_phases_ms"].items())),
        _format_bare_open(r),
        "nbcore call      %8.1f ms  %.2fx the host's and the env's python -c pass (%.1f + %.1f ms)" % (
            r["cli_call_ms"], x["cli_call_vs_pythons_start"], r["host_python_start_ms"], r["open_python_start_ms"]),
        "render loop     %8.1f frames/s  %.2fx in-process (%.1f); %s %.1f frames/s  %.2fx in-process (%.1f)" % (
            r["render_loop"]["plain"]["fps"], x["render_loop_vs_in_process"], r["render_loop"]["plain"]["in_process_fps"],
            allocator, r["render_loop"]["allocated"]["fps"], x["render_loop_allocated_vs_in_process"],
            r["render_loop"]["allocated"]["in_process_fps"]),
        "render loop, run_ahead(%d) %6.1f frames/s  %.2fx in-process; %s %.1f frames/s  %.2fx in-process" % (
            RUN_AHEAD, r["render_loop"]["plain"]["run_ahead_fps"], x["render_loop_run_ahead_vs_in_process"],
            allocator, r["render_loop"]["allocated"]["run_ahead_fps"],
            x["render_loop_allocated_run_ahead_vs_in_process"]),
        "render loop floors, in-process: each frame copied once into shared memory %.1f frames/s (render loop "
        "%.2fx it, run_ahead(%d) %.2fx); each frame sent through a bare loopback TCP socket %.1f frames/s "
        "(%.2fx, run_ahead(%d) %.2fx)" % (
            r["render_loop"]["plain"]["in_process_one_copy_fps"], x["render_loop_vs_in_process_one_copy"], RUN_AHEAD,
            x["render_loop_run_ahead_vs_in_process_one_copy"], r["render_loop"]["plain"]["in_process_socket_fps"],
            x["render_loop_vs_in_process_socket"], RUN_AHEAD, x["render_loop_run_ahead_vs_in_process_socket"]),
        "%s render loop floor, in-process: each frame rendered in already-touched shared memory %.1f frames/s "
        "(render loop %.2fx it, run_ahead(%d) %.2fx)" % (
            allocator, r["render_loop"]["allocated"]["in_process_shared_fps"],
            x["render_loop_allocated_vs_in_process_shared"], RUN_AHEAD,
            x["render_loop_allocated_run_ahead_vs_in_process_shared"]),
        _format_torch_render_loop(r),
    ] + ([] if r["memcpy_to_shared_ms"] is None else [
        "frame to worker %.2fx memcpy into shared memory (%.2f ms)" % (
            x["frame_to_worker_vs_memcpy_to_shared"], r["memcpy_to_shared_ms"])]))


def _format_bare_open(result):
    """The bare open's line, or why it was not measured."""
    if result["bare_open_ms"] is None:
        return "bare open: not measured (the %s backend runs no commands)" % result["backend"]
    x = result["ratios"]
    return ("bare open (a host and worker of subprocess, socket and pickle, no framework) %6.1f ms  %.2fx python -c "
            "pass; open to first result %.2fx it" % (result["bare_open_ms"], x["bare_open_vs_python_start"],
                                                      x["open_to_first_result_vs_bare_open"]))


def _format_torch_render_loop(result):
    """The torch render loop's line, or why it was not measured."""
    loop = result["render_loop_torch"]
    if loop is None:
        return "render loop with torch: not measured (%s)" % (
            "torch is not importable in the environment" if result["frame_is_numpy"]
            else "frames are not numpy arrays: numpy is missing on one end")
    x = result["ratios"]
    return ("render loop with torch %s (in-process in the worker: %.1f frames/s, allocate_ndarray %.1f): "
            "%.2fx in-process, run_ahead(%d) %.2fx; allocate_ndarray %.2fx, run_ahead(%d) %.2fx" % (
                loop["torch"], loop["plain"]["in_process_fps"], loop["allocated"]["in_process_fps"],
                x["render_loop_torch_vs_in_process"], RUN_AHEAD, x["render_loop_torch_run_ahead_vs_in_process"],
                x["render_loop_torch_allocated_vs_in_process"], RUN_AHEAD,
                x["render_loop_torch_allocated_run_ahead_vs_in_process"]))
