"""Helpers of the inner apptainer tests (``from innertest import ...``)."""
from nbcore.host.launch import prepare, start
from nbcore.plugin.progress import Progress


class CountingProgress(Progress):
    """A quiet progress that keeps the steps the backend announces (conversions, builds, removals)."""

    def __init__(self):
        super().__init__(quiet=True)
        self.steps = []

    def step(self, message):
        if not message.startswith(("installing environment ", "environment ")):
            self.steps.append(message)


def one_error_line(stderr):
    """The CLI's error: one line, the last of its output, no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("nbcore: error") or "Traceback" in line]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0]


def open_env(name, **kwargs):
    config, provider, env = prepare(name, "nbcore.yaml", backend="apptainer", progress=Progress(quiet=True))
    return start(config, provider, env, **kwargs)
