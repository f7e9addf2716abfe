"""Progress reporting for long work (environment creation, image builds)."""
import sys

from ..errors import InstallError
from .process import LocalProcess, OutputTail

LOG_PREFIX = "  | "


class Progress:
    """Prints install steps and streams the engine's log to stderr.

    Backends call :meth:`step` for each stage, :meth:`line` for each line of an
    engine's log, and :meth:`run` to run a command while streaming its output.
    """

    def __init__(self, stream=None, quiet=False, tail_lines=30):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tail = OutputTail(max_lines=tail_lines)

    def step(self, message: str) -> None:
        """Announce a stage of the work."""
        if not self.quiet:
            self.stream.write("nbcore: %s\n" % message)
            self.stream.flush()

    def line(self, text: str) -> None:
        """Stream one line of an engine's log (kept for error messages)."""
        text = text.rstrip("\n")
        self.tail.add_line(text)
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
        try:
            process = LocalProcess(argv, env=env, cwd=cwd, echo=not self.quiet, stream=self.stream,
                                   prefix=LOG_PREFIX, tail=self.tail, name="nbcore-install-output", guard=True)
        except FileNotFoundError:
            raise InstallError("%s failed: %s not found" % (step or "install", argv[0])) from None
        try:
            code = process.wait()
        finally:
            process.kill()
        if code != 0:
            lines = [line for line in self.tail.lines() if line.strip()]
            raise InstallError("%s failed (exit code %d): %s" % (
                step or " ".join(map(str, argv)), code, lines[-1] if lines else "no output"))
