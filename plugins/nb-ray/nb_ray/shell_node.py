"""``nbcore shell --backend ray``, the node's half: the command runs here, its terminal or pipes relayed to the host.

The node agent makes a :class:`ShellSession` instead of a worker.  The session
connects back to the host with the fallback protocol's ``worker_connect`` (the
host's listener authenticates it with the per-command secret), starts the
command (on a pty of its own when the host has a terminal, else with pipes),
and relays: the command's output on the ``main`` connection, the host's input
and window size on ``control``.  It ends the command when the host goes (its
connection closes) or the agent is told to, and reports the exit code to both.

Messages are tuples: host to node ``("stdin", bytes)``, ``("stdin-eof",)``,
``("winsize", rows, columns)``; node to host ``("stdout", bytes)``,
``("stderr", bytes)``, ``("exit", code)``.
"""
import fcntl
import functools
import importlib
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading

from nbcore.plugin import OutputTail
from nbcore.worker import write_all

#: The exit code when the command could not be started or the host could not be reached.
CANNOT_RUN = 255
#: Seconds to read what the command wrote before it exited, once it has (its children may keep the pty open).
DRAIN_SECONDS = 2.0
#: Runs the command as the leader of the pty's session, with the pty as its controlling terminal
#: (so that Ctrl-C typed on the host interrupts it and job control works) and the terminal's signals
#: at their defaults (a node started from ``nohup`` or ``cmd &`` passes SIGINT on ignored), then executes it.
TERMINAL_LEADER = ("import fcntl, os, signal, sys, termios\n"
                   "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
                   "for name in ('SIGINT', 'SIGQUIT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU'):\n"
                   "    signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
                   "try:\n"
                   "    os.execvp(sys.argv[1], sys.argv[1:])\n"
                   "except OSError as exc:\n"
                   "    sys.stderr.write('nbcore: error: %s: %s\\r\\n' % (sys.argv[1], exc.strerror))\n"
                   "    sys.exit(126 if isinstance(exc, PermissionError) else 127)\n")


def exit_code(returncode: int) -> int:
    """A process's exit code as a shell reports it: 128 + N for a process ended by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def set_window_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


class ShellSession:
    """One ``nbcore shell`` command on the node, watched by the node agent as it watches a worker
    (``wait``, ``kill``, ``output_tail``)."""

    def __init__(self, command, request: dict, env_name: str):
        self._command = command
        self._request = request
        self._env_name = env_name
        self._process = None
        self._terminal = None  # the pty's master side, when the command has a terminal
        self._main = self._control = None
        self._send_lock = threading.Lock()
        self._started = threading.Lock()  # held while the command starts, so that kill() waits for it
        self._killed = False
        self._code = None
        self._done = threading.Event()
        self._tail = OutputTail()
        threading.Thread(target=self._run, daemon=True).start()

    # the agent's side

    def wait(self, timeout: float):
        self._done.wait(timeout)
        return self._code

    def kill(self) -> None:
        """End the command and whatever else runs in its process group (idempotent)."""
        with self._started:
            self._killed = True
            if self._process is not None:
                try:
                    os.killpg(self._process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def output_tail(self) -> str:
        return self._tail.text()

    # the session

    def _run(self):
        try:
            self._connect()
        except Exception as exc:
            self._finish(CANNOT_RUN, "cannot connect back to the host at %s: %s" % (self._request["address"], exc))
            return
        try:
            outputs = self._start()
        except OSError as exc:
            code, message = self._start_error(exc)
            self._send(("stderr", message.encode()))
            self._finish(code, message)
            return
        if outputs is None:  # ended before it started
            self._finish(CANNOT_RUN)
            return
        threading.Thread(target=self._relay_input, daemon=True).start()
        code = exit_code(self._process.wait())
        self.kill()  # what the command left running in its process group goes with it
        drained = True
        for thread in outputs:
            thread.join(DRAIN_SECONDS)
            drained = drained and not thread.is_alive()
        self._finish(code, close_terminal=drained)

    def _start_error(self, exc):
        """The exit code and message of a command that could not start, as ``nbcore shell`` reports them."""
        program = self._command.argv[0]
        if exc.filename not in (program, None):  # e.g. the working directory
            return CANNOT_RUN, "nbcore: error: cannot start %s in %s: %s: %s\n" % (program, self._env_name, exc.filename,
                                                                                  exc.strerror)
        found = isinstance(exc, PermissionError)
        return (126 if found else 127), "nbcore: error: %s: %s in %s\n" % (
            program, "permission denied" if found else "command not found", self._env_name)

    def _connect(self):
        connect = importlib.import_module(self._request["protocol"]).worker_connect
        secret = bytes.fromhex(self._request["secret"])
        self._main = connect(self._request["address"], secret, "main")
        self._control = connect(self._request["address"], secret, "control")
        self._control.keepalive(self._request["keepalive"])

    def _start(self):
        """Start the command; return the threads that relay its output (None: the session was ended first)."""
        command = self._command
        with self._started:
            if self._killed:
                return None
            if self._request["tty"]:
                master, slave = pty.openpty()
                set_window_size(slave, *self._request["winsize"])
                try:
                    self._process = subprocess.Popen([sys.executable, "-I", "-c", TERMINAL_LEADER] + command.argv,
                                                     stdin=slave, stdout=slave, stderr=slave, env=command.env,
                                                     cwd=command.cwd, start_new_session=True)
                finally:
                    os.close(slave)
                self._terminal = master
                streams = [("stdout", master)]  # a terminal has one output
            else:
                self._process = subprocess.Popen(command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, env=command.env, cwd=command.cwd,
                                                 start_new_session=True)
                streams = [("stdout", self._process.stdout.fileno()), ("stderr", self._process.stderr.fileno())]
        threads = [threading.Thread(target=self._relay_output, args=stream, daemon=True) for stream in streams]
        for thread in threads:
            thread.start()
        return threads

    def _relay_output(self, kind, fd):
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's last writer closed it
                data = b""
            if not data:
                return
            self._tail.feed(data.decode(errors="replace"))
            self._send((kind, data))

    def _relay_input(self):
        """The host's input to the command; the host gone (its connection closed) ends the command."""
        process = self._process
        while True:
            try:
                message = self._control.recv()
            except Exception:  # closed, broken, or the host's machine gone silent (keepalive)
                if not self._done.is_set():
                    self.kill()
                return
            kind = message[0]
            try:
                if kind == "stdin":
                    self._write_input(message[1])
                elif kind == "stdin-eof" and process.stdin is not None:
                    process.stdin.close()
                elif kind == "winsize" and self._terminal is not None:
                    set_window_size(self._terminal, message[1], message[2])
            except OSError:
                pass  # the command closed its input or ended: its exit comes next

    def _write_input(self, data):
        if self._terminal is not None:
            write_all(functools.partial(os.writev, self._terminal), [data])
        elif self._process.stdin is not None:
            self._process.stdin.write(data)
            self._process.stdin.flush()

    def _send(self, message):
        with self._send_lock:
            try:
                self._main.send(message)
            except (OSError, EOFError):
                pass  # the host is gone: the input relay ends the command

    def _finish(self, code, message="", close_terminal=True):
        """Report the exit code to the host and the agent; close the connections (and the pty, unless an output
        relay still reads it: its descriptor must not be reused under it)."""
        if message:
            self._tail.feed(message)
        if self._main is not None:
            self._send(("exit", code))
            for channel in (self._main, self._control):
                channel.close()
        if self._terminal is not None and close_terminal:
            os.close(self._terminal)
        self._code = code
        self._done.set()
