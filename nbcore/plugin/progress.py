"""Progress reporting for long work (environment creation, image builds)."""
import os
import sys
import time

from ..errors import InstallError
from .process import LocalProcess, OutputTail

LOG_PREFIX = "  | "
#: Seconds without output after which a step run by :meth:`Progress.run` says it is still alive
#: (``NBCORE_HEARTBEAT_SECONDS`` overrides it).
HEARTBEAT_SECONDS = 30.0


def heartbeat_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get("NBCORE_HEARTBEAT_SECONDS") or HEARTBEAT_SECONDS))
    except ValueError:
        return HEARTBEAT_SECONDS


def format_duration(seconds: float) -> str:
    """``45 s``, ``2 min 05 s``."""
    seconds = int(seconds)
    return "%d s" % seconds if seconds < 60 else "%d min %02d s" % (seconds // 60, seconds % 60)


class _TimedTail(OutputTail):
    """An output tail that remembers when output last came."""

    def __init__(self, tail):
        self._inner = tail
        self.last_output = time.monotonic()

    def feed(self, text):
        self.last_output = time.monotonic()
        self._inner.feed(text)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class Progress:
    """Prints install steps and streams the engine's log to stderr.

    Backends call :meth:`step` for each stage, :meth:`line` for each line of an
    engine's log, and :meth:`run` to run a command while streaming its output.
    A command of :meth:`run` that prints nothing for :func:`heartbeat_seconds`
    gets a heartbeat line (``nbcore: still running: STEP (no output for 30 s,
    1 min 10 s in all)``) every such period.

    ``on_event(dict)``, when given, receives every step (``{"event": "step",
    "message"}``), heartbeat (``{"event": "heartbeat", "step", "elapsed",
    "silent"}``, seconds) and line of :meth:`line` (``{"event": "output",
    "line"}``), e.g. for ``nbcore install --json``.
    """

    def __init__(self, stream=None, quiet=False, tail_lines=30, on_event=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tail = OutputTail(max_lines=tail_lines)
        self.on_event = on_event

    def _event(self, **event):
        if self.on_event is not None:
            self.on_event(event)

    def step(self, message: str) -> None:
        """Announce a stage of the work."""
        self._event(event="step", message=message)
        if not self.quiet:
            self.stream.write("nbcore: %s\n" % message)
            self.stream.flush()

    def heartbeat(self, step: str, elapsed: float, silent: float) -> None:
        """Say that ``step`` is still running (``elapsed`` seconds in all, ``silent`` without output)."""
        self._event(event="heartbeat", step=step, elapsed=round(elapsed, 1), silent=round(silent, 1))
        if not self.quiet:
            self.stream.write("nbcore: still running: %s (no output for %s, %s in all)\n"
                              % (step, format_duration(silent), format_duration(elapsed)))
            self.stream.flush()

    def line(self, text: str) -> None:
        """Stream one line of an engine's log (kept for error messages)."""
        text = text.rstrip("\n")
        self.tail.add_line(text)
        self._event(event="output", line=text)
        if not self.quiet:
            self.stream.write(LOG_PREFIX + text + "\n")
            self.stream.flush()

    def run(self, argv, step=None, env=None, cwd=None) -> None:
        """Run ``argv``, streaming its output as it comes; raise :class:`InstallError` with the last line on failure.

        The command runs under a guard (:mod:`nbcore.worker.descendants`): when it
        ends, when the run is interrupted (Ctrl-C, SIGTERM), or when this process
        dies (even by ``kill -9``), everything it started is killed, ``setsid``
        daemons included, so nothing it started keeps running.
        """
        if step:
            self.step(step)
        tail = _TimedTail(self.tail)
        try:
            process = LocalProcess(argv, env=env, cwd=cwd, echo=not self.quiet, stream=self.stream,
                                   prefix=LOG_PREFIX, tail=tail, name="nbcore-install-output", guard=True)
        except FileNotFoundError:
            raise InstallError("%s failed: %s not found" % (step or "install", argv[0])) from None
        try:
            code = self._wait_with_heartbeats(process, tail, step or " ".join(map(str, argv[:2])))
        finally:
            process.kill()
        if code != 0:
            lines = [line for line in self.tail.lines() if line.strip()]
            raise InstallError("%s failed (exit code %d): %s" % (
                step or " ".join(map(str, argv)), code, lines[-1] if lines else "no output"))

    def _wait_with_heartbeats(self, process, tail, step):
        period = heartbeat_seconds()
        started = time.monotonic()
        said = started
        while True:
            now = time.monotonic()
            quiet_since = max(tail.last_output, said)
            code = process.wait(max(0.05, quiet_since + period - now))
            if code is not None:
                return code
            now = time.monotonic()
            if now - max(tail.last_output, said) >= period:
                self.heartbeat(step, now - started, now - tail.last_output)
                said = now
