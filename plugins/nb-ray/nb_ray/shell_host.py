"""``nbcore shell --backend ray``, the host's half: this terminal (or these pipes) wired to the command on the node.

:func:`relay` sends the host's input and window size on the ``control``
connection and writes what the command prints, from ``main``, until the node
reports the exit code (messages: :mod:`nb_ray.shell_node`).  With a terminal on
both ends, :func:`raw_terminal` hands every key to the node's pty (Ctrl-C
included, which interrupts the command there) and restores the terminal however
the command ends.
"""
import contextlib
import functools
import os
import select
import signal
import sys
import termios
import threading
import tty
from typing import Optional, Tuple

from nbcore.plugin import WorkerError
from nbcore.worker import write_all

#: Bytes read from the host's standard input at a time.
CHUNK_BYTES = 65536


def host_terminal() -> Optional[int]:
    """The descriptor of the host's terminal when standard input and output both are one, else None (pipes)."""
    try:
        return 0 if os.isatty(0) and os.isatty(1) else None
    except OSError:
        return None


def window_size(fd: int) -> Tuple[int, int]:
    """``(rows, columns)`` of the terminal ``fd``."""
    size = os.get_terminal_size(fd)
    return size.lines, size.columns


@contextlib.contextmanager
def raw_terminal(fd: Optional[int]):
    """The terminal ``fd`` in raw mode for the block, restored on every way out (no terminal: nothing to do)."""
    if fd is None:
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keys typed before the command started still count
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _InputSender:
    """Sends the host's standard input, and the window size when it changes, on ``control`` (one thread)."""

    def __init__(self, control, terminal):
        self._control = control
        self._terminal = terminal
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()

    def window_changed(self, *_):
        os.write(self._wake_write, b"w")

    def stop(self):
        os.write(self._wake_write, b"q")
        self._thread.join(1.0)
        if not self._thread.is_alive():
            os.close(self._wake_read)
        os.close(self._wake_write)

    def _run(self):
        poller = select.poll()  # not select(): it fails on descriptors above 1024
        poller.register(0, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        try:
            while True:
                ready = [fd for fd, _ in poller.poll()]
                if self._wake_read in ready:
                    wakes = os.read(self._wake_read, 64)
                    if b"q" in wakes:
                        return
                    if b"w" in wakes:
                        self._control.send(("winsize",) + window_size(self._terminal))
                if 0 in ready:
                    try:
                        data = os.read(0, CHUNK_BYTES)
                    except OSError:
                        data = b""
                    if data:
                        self._control.send(("stdin", data))
                    else:
                        self._control.send(("stdin-eof",))
                        poller.unregister(0)
        except (OSError, EOFError):
            return  # the connection is gone: the main loop reports it


def relay(main, control, terminal: Optional[int], where: str) -> int:
    """Relay between this process's standard streams and the command until it exits; return its exit code.

    ``terminal`` is :func:`host_terminal`; ``where`` names the node for errors.  Closing the
    connections on the way out (Ctrl-C without a terminal, an error) ends the command on the node.
    """
    sender = _InputSender(control, terminal)
    previous = signal.signal(signal.SIGWINCH, sender.window_changed) if terminal is not None else None
    try:
        with raw_terminal(terminal):
            sender.start()
            while True:
                try:
                    message = main.recv()
                except (OSError, EOFError):
                    raise WorkerError("the connection to the command on %s broke off before it exited" % where) from None
                if message[0] == "exit":
                    return message[1]
                write_all(functools.partial(os.writev, 2 if message[0] == "stderr" else 1), [message[1]])
    finally:
        if terminal is not None:
            signal.signal(signal.SIGWINCH, previous)
        main.close()
        control.close()
        sender.stop()
        sys.stdout.flush()
