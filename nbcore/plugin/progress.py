"""Progress reporting for long work (environment creation, image builds)."""
import collections
import subprocess
import sys

from ..errors import InstallError


class Progress:
    """Prints install steps and streams the engine's log to stderr.

    Backends call :meth:`step` for each stage, :meth:`line` for each line of an
    engine's log, and :meth:`run` to run a command while streaming its output.
    """

    def __init__(self, stream=None, quiet=False, tail_lines=30):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tail = collections.deque(maxlen=tail_lines)

    def step(self, message: str) -> None:
        """Announce a stage of the work."""
        if not self.quiet:
            self.stream.write("nbcore: %s\n" % message)
            self.stream.flush()

    def line(self, text: str) -> None:
        """Stream one line of an engine's log (kept for error messages)."""
        text = text.rstrip("\n")
        self.tail.append(text)
        if not self.quiet:
            self.stream.write("  | %s\n" % text)
            self.stream.flush()

    def run(self, argv, step=None, **popen_kwargs) -> None:
        """Run ``argv``, streaming its output; raise :class:`InstallError` with the last lines on failure."""
        if step:
            self.step(step)
        try:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, **popen_kwargs)
        except FileNotFoundError:
            raise InstallError("%s failed: %s not found" % (step or "install", argv[0])) from None
        with process:
            for raw in process.stdout:
                self.line(raw.decode("utf-8", "replace"))
        if process.returncode != 0:
            raise InstallError("%s failed (exit code %d): %s" % (
                step or " ".join(map(str, argv)), process.returncode, self.tail[-1] if self.tail else "no output"))
