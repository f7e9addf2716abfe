"""``nbcore shell --backend ray``, the host's half, without a cluster."""
import os

from nb_ray.shell_host import _InputSender

from nbcore.testing import wait_until


class Recorder:
    """Stands for the control connection: keeps what is sent."""

    def __init__(self):
        self.sent = []

    def send(self, message):
        self.sent.append(message)


def test_input_is_relayed_from_a_host_with_more_than_1024_descriptors(many_descriptors):
    read, write = os.pipe()
    saved_stdin = os.dup(0)
    os.dup2(read, 0)
    os.close(read)
    control = Recorder()
    sender = _InputSender(control, terminal=None)
    try:
        assert sender._wake_read > 1024
        sender.start()
        os.write(write, b"typed")
        os.close(write)
        wait_until(lambda: ("stdin-eof",) in control.sent, 10, "the input and its end to be relayed")
        assert control.sent == [("stdin", b"typed"), ("stdin-eof",)]
    finally:
        sender.stop()
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)
