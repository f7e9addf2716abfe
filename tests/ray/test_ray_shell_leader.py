"""The pty leader of ``nbcore shell --backend ray`` (no cluster needed): the command gets the terminal's signals."""
import os
import pty
import signal
import subprocess
import sys

import pytest

pytest.importorskip("nb_ray", reason="nb-ray is not installed (pip install -e plugins/nb-ray)")

from nb_ray.shell_node import TERMINAL_LEADER  # noqa: E402

#: Signal numbers a terminal sends: SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def _ignore_terminal_signals():
    for number in TERMINAL_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def test_the_command_gets_the_terminal_signals_even_when_the_node_ignores_them():
    """A node started from ``nohup`` or ``cmd &`` passes SIGINT on ignored: Ctrl-C must still reach the command."""
    master, slave = pty.openpty()
    leader = subprocess.Popen([sys.executable, "-I", "-c", TERMINAL_LEADER, "grep", "^SigIgn", "/proc/self/status"],
                              stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                              preexec_fn=_ignore_terminal_signals)
    os.close(slave)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the command ended and closed the pty
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
    assert leader.wait(30) == 0, output
    ignored = int(output.decode().split()[-1], 16)
    assert not [number for number in TERMINAL_SIGNALS if ignored & (1 << (number - 1))], output
