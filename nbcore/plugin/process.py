"""Child processes as the host runs and watches them: their output followed, their process group ended.

:class:`OutputReader` is the one reader every worker handle and install step uses:
it echoes a child's output to the host's stderr as it comes (``\\r`` progress updates
included) and keeps a bounded :class:`OutputTail` for error messages.
:class:`LocalProcess` runs a local command in a session of its own and ends the
whole process group, and every process below the command, when killed;
:class:`SubprocessWorker` is that, as a worker handle.  Install steps run under
the guard of :mod:`nbcore.worker.descendants` and carry :data:`INSTALL_STEP_VARIABLE`,
so that nothing they start outlives the installer or meets a later rebuild.
"""
import abc
import codecs
import collections
import contextlib
import errno
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
from typing import Optional

from ..worker import descendants


#: Most bytes read from a child's output at once.
CHUNK_BYTES = 64 * 1024
#: Most chunks read from a pipe when told to stop (what the pipe holds; a process that
#: escaped the killed group and keeps writing cannot hold the reader).
DRAIN_CHUNKS = 16
#: How long :meth:`OutputReader.stop` waits for the reader thread.
STOP_TIMEOUT = 5.0

_SEPARATORS = re.compile(r"([\r\n])")


class WorkerProcess(abc.ABC):
    """A running worker as the host watches it (a process, a container, a thread)."""

    @abc.abstractmethod
    def poll(self) -> Optional[int]:
        """Return the exit code if the worker has ended, else None (never blocks)."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> Optional[int]:
        """Wait up to ``timeout`` seconds for the worker to end; return its exit code or None."""

    @abc.abstractmethod
    def kill(self) -> None:
        """End the worker now and release what it holds (idempotent)."""

    def output_tail(self) -> str:
        """The last lines the worker wrote to stdout/stderr, for error messages."""
        return ""


class OutputTail:
    """The last lines of a child's output, at most ``max_lines`` lines and ``max_chars`` characters.

    Fed with text as it comes: ``\\n`` ends a line, ``\\r`` starts it over (as a
    terminal shows a progress bar), so a long line or a flood of updates costs
    no more than the bounds.
    """

    def __init__(self, max_lines=20, max_chars=16 * 1024):
        self.max_chars = max_chars
        self._lines = collections.deque(maxlen=max_lines)
        self._current = ""
        self._restart = False
        self._lock = threading.Lock()

    def feed(self, text: str) -> None:
        """Add output text (any part of a line, any number of lines)."""
        with self._lock:
            for piece in _SEPARATORS.split(text):
                if piece == "\n":
                    self._commit()
                elif piece == "\r":
                    self._restart = True
                elif piece:
                    if self._restart:
                        self._current, self._restart = "", False
                    self._current = (self._current + piece)[-self.max_chars:]
            self._trim()

    def add_line(self, line: str) -> None:
        """Add one whole line."""
        self.feed(line.rstrip("\n") + "\n")

    def _commit(self):
        self._lines.append(self._current)
        self._current, self._restart = "", False

    def _trim(self):
        total = len(self._current) + sum(len(line) for line in self._lines)
        while self._lines and total > self.max_chars:
            total -= len(self._lines.popleft())

    def lines(self):
        """The kept lines, oldest first (the unfinished last line included)."""
        with self._lock:
            return list(self._lines) + ([self._current] if self._current else [])

    def text(self) -> str:
        """The kept lines as one string, for an error message."""
        return "\n".join(self.lines())


class OutputReader:
    """Follows a child's output in a background thread: echoes it and keeps an :class:`OutputTail`.

    ``source`` is a readable file object (read with ``os.read`` in chunks of up
    to :data:`CHUNK_BYTES`, never by line) or an iterable of byte chunks.  The
    echo goes to ``stream`` (default: the host's ``sys.stderr`` at the time of
    writing), each line started with ``prefix``; ``echo=False`` only keeps the tail.
    A file source is closed when the reader ends.
    """

    def __init__(self, source, echo=True, stream=None, prefix="", tail=None, name="nbcore-output"):
        self.tail = tail if tail is not None else OutputTail()
        self._echo = echo
        self._stream = stream
        self._prefix = prefix
        self._line_start = True
        self._last_echoed = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if hasattr(source, "fileno"):
            self._source = source
            wake_read, wake_write = os.pipe()
            self._wake_read = wake_read
            self._wake = open(wake_write, "wb", buffering=0)
            target = self._follow_file
        else:
            self._source = iter(source)
            self._wake = None
            target = self._follow_chunks
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def _follow_file(self):
        fd = self._source.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self._wake_read in ready:
                    self._drain(fd)
                    break
                chunk = os.read(fd, CHUNK_BYTES)
                if not chunk:
                    break
                self._take(chunk)
        finally:
            self._finish()
            self._source.close()
            os.close(self._wake_read)

    def _drain(self, fd):
        os.set_blocking(fd, False)
        for _ in range(DRAIN_CHUNKS):
            try:
                chunk = os.read(fd, CHUNK_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._take(chunk)

    def _follow_chunks(self):
        try:
            for chunk in self._source:
                self._take(chunk)
        except Exception:
            pass  # the stream broke off (the engine went away): the tail keeps what came
        finally:
            self._finish()

    def _take(self, chunk):
        self._handle(self._decoder.decode(chunk))

    def _finish(self):
        self._handle(self._decoder.decode(b"", True))
        if self._last_echoed and not self._last_echoed.endswith("\n"):
            self._write("\n")  # what the host prints next starts on a line of its own

    def _handle(self, text):
        if not text:
            return
        self.tail.feed(text)
        if self._echo:
            self._write(self._prefixed(text) if self._prefix else text)
            self._last_echoed = text[-1:]

    def _write(self, text):
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            self._echo = False  # stderr is gone: keep reading, or the child blocks on a full pipe

    def _prefixed(self, text):
        out = []
        for piece in _SEPARATORS.split(text):
            if piece in ("\r", "\n"):
                self._line_start = True
            elif piece and self._line_start:
                out.append(self._prefix)
                self._line_start = False
            out.append(piece)
        return "".join(out)

    def stop(self, timeout=STOP_TIMEOUT) -> None:
        """Stop following: read what the pipe holds now, then end (a chunk iterable is waited for instead).

        Call it once the child has ended: a process it left behind may hold the
        pipe open for ever, so the reader never waits for the end of the stream.
        """
        if self._wake is not None and not self._wake.closed:
            try:
                self._wake.write(b"x")
            except (OSError, ValueError):
                pass  # the reader already ended and closed its side, or another stop() closed ours
        self._thread.join(timeout)
        if self._wake is not None and not self._thread.is_alive():
            self._wake.close()


#: The variable every guarded command (an install step) and what it starts carry: the folder being installed.
#: A later install of the same folder finds the survivors of a killed one by it (:func:`end_install_steps`).
INSTALL_STEP_VARIABLE = "NBCORE_INSTALL_STEP_OF"
_installing = threading.local()


@contextlib.contextmanager
def installing(folder):
    """Mark the guarded commands this thread starts inside the block as install steps of ``folder``."""
    previous = getattr(_installing, "folder", None)
    _installing.folder = str(folder)
    try:
        yield
    finally:
        _installing.folder = previous


def end_install_steps(folder) -> int:
    """Kill every process left running by an earlier install of ``folder`` (with what it started); return how
    many there were.  Call it holding the folder's install lock: no live install is running then."""
    needle = os.fsencode("\0%s=%s\0" % (INSTALL_STEP_VARIABLE, folder))
    found = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                if needle in b"\0" + f.read() + b"\0":
                    found.append(int(name))
        except OSError:
            continue
    for pid in found:
        _kill_tree(pid)
    return len(found)


def _kill_tree(pid):
    """SIGKILL ``pid`` and every process below it (set-sid ones included)."""
    try:
        os.kill(pid, signal.SIGSTOP)  # it starts nothing more while its tree is walked
    except OSError:
        return
    descendants.end_descendants(pid)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _guarded(argv, env, cwd):
    """``argv`` run by the guard of :mod:`nbcore.worker.descendants`, and its environment marked when installing.

    A missing program is a :class:`FileNotFoundError` here, as without the guard."""
    program = argv[0]
    if os.sep in program:
        found = os.path.exists(os.path.join(str(cwd) if cwd is not None else "", program))
    else:
        found = shutil.which(program, path=(env if env is not None else os.environ).get("PATH")) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    folder = getattr(_installing, "folder", None)
    if folder is not None:
        env = dict(os.environ if env is None else env, **{INSTALL_STEP_VARIABLE: folder})
    return [sys.executable, "-I", descendants.__file__, str(os.getpid())] + argv, env


class LocalProcess:
    """A local command in a session (and process group) of its own, its output followed by an :class:`OutputReader`.

    :meth:`kill` ends the whole group and every process below the command (those that left the group with
    ``setsid`` too, as long as the command is their subreaper), and stops the reader even when a process
    that escaped holds the pipe.  ``guard`` runs the command under the guard of
    :mod:`nbcore.worker.descendants`: it and all it starts die with this process, even by ``kill -9``.
    """

    def __init__(self, argv, env=None, cwd=None, echo=True, stream=None, prefix="", tail=None,
                 name="nbcore-output", guard=False):
        self.argv = [str(arg) for arg in argv]
        argv, env = _guarded(self.argv, env, cwd) if guard else (self.argv, env)
        self.process = subprocess.Popen(
            argv, env=env, cwd=None if cwd is None else str(cwd), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._killed = False
        self.reader = None
        try:
            self.reader = OutputReader(self.process.stdout, echo=echo, stream=stream, prefix=prefix, tail=tail,
                                       name=name)
        except BaseException:
            self.kill()
            raise

    def poll(self) -> Optional[int]:
        return self.process.poll()

    def wait(self, timeout=None) -> Optional[int]:
        """Wait up to ``timeout`` seconds (None: for ever) for the command to end; return its exit code or None."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """End the command and every process of its group, reap it, stop the reader (idempotent)."""
        if not self._killed:
            self._killed = True
            if self.process.poll() is None:
                # While the command lives (a subreaper), what it started is below it, set-sid or not; stopped,
                # it neither starts more nor exits on its own while they are killed.
                with contextlib.suppress(OSError):
                    os.kill(self.process.pid, signal.SIGSTOP)
                descendants.end_descendants(self.process.pid)
            try:
                # The group id stays taken while any member lives, so this reaches only our processes.
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # the group is empty (all has ended) or holds only processes we may not signal
            self.process.wait()
        if self.reader is not None:
            self.reader.stop()

    def output_tail(self) -> str:
        """The last lines of output; once the command has ended, all it wrote is in."""
        if self.process.poll() is not None:
            self.reader.stop()
        return self.reader.tail.text()


class SubprocessWorker(LocalProcess, WorkerProcess):
    """A worker running as a local child process; its output is echoed to the host's stderr.

    Backends that start a local command (venv, conda, apptainer) use it as is.
    Killing it ends the worker's whole process group, children included.
    """

    def __init__(self, argv, env, cwd, tail_lines=20, echo=True):
        super().__init__(argv, env=env, cwd=cwd, echo=echo, tail=OutputTail(max_lines=tail_lines),
                         name="nbcore-worker-output")
