"""``nbcore bench``: latency, frame transfer and start time, each beside a same-run reference.

References are measured interleaved with the protocol (alternating blocks) so
that machine noise hits both alike: a bare ``multiprocessing.Pipe`` round trip
for the no-op, a memcpy of the same bytes for the frame, and the environment's
interpreter running ``python -c pass`` for the start time.

The no-op alternates :data:`.run.NOOP_BLOCKS` blocks of calls with as many blocks
of Pipe round trips.  The frame figures (to host, to host built with
``allocate_ndarray``, to worker) take turns with the memcpy in blocks:
memcpy, frame to host, memcpy, allocated frame to host, memcpy, frame to
worker, and again.  Each block of calls opens with one call timed apart: it
follows 33 MB of memcpy, so it finds the caches flushed and the peer asleep.
Those first calls make the ``first_call_ms`` figures (what a call costs in a
loop that does heavy work between calls); the :data:`.run.FRAME_BLOCK` calls after
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
- **render loop**: frames/s of a worker generator yielding :data:`.render_loop.RENDER_FRAMES`
  rendered 1080p float32 frames, as fresh arrays and as ``allocate_ndarray``
  frames, one item per ``next()`` and wrapped in ``run_ahead`` (:data:`.render_loop.RUN_AHEAD`
  items ahead), beside the same generator run in the host process (alternating rounds); and, when the
  environment has torch, the same for a compute-bound torch render (:mod:`nbcore.worker.bench_torch`),
  whose in-process reference runs in the worker's process.
- **memcpy into shared memory**: the frame reference taken again into an
  already-touched shared mapping (4 KiB pages unless the system gives shared
  memory huge pages), the floor of any protocol that copies into shared memory.
- **a bare loopback TCP socket**: the frame's bytes sent through a TCP socket to
  a child process and back (two kernel copies each way), the floor of any
  protocol over loopback TCP.

Modules: :mod:`.references` (the references and timing), :mod:`.opening` (start
and open), :mod:`.render_loop`, :mod:`.run` (every figure against one
environment; the size sweep) and :mod:`.report` (text and plot).
"""
from .report import format_report, format_sweep, plot_sweep
from .run import SWEEP_SIZES, run_bench, run_sweep, sweep_protocol_lists

__all__ = ["SWEEP_SIZES", "format_report", "format_sweep", "plot_sweep", "run_bench", "run_sweep",
           "sweep_protocol_lists"]
