"""Helpers of the published-image tests (``from registrytest import ...``)."""
from nbcore.plugin.progress import Progress

from nbtest import write

BASE_IMAGE_TEMPLATE = "nbcore-ci/python:{python}"
HOST_PYTHON = "3.11"

TEST_MODULE = '''
import os
import resource


def info():
    return {"marker": open("/published-marker").read().strip(), "torch_home": os.environ.get("TORCH_HOME"),
            "memlock": resource.getrlimit(resource.RLIMIT_MEMLOCK)[1], "stack": resource.getrlimit(resource.RLIMIT_STACK)[1]}
'''


def write_project(folder, name, registry, marker="published"):
    """An ``nbcore.yaml`` whose environment ``name`` builds a small image on the CI base image."""
    return write(folder / "nbcore.yaml", """
        registry: %s
        environments:
          %s:
            python: "%s"
            docker:
              build_script: "echo %s > /published-marker"
        """ % (registry, name, HOST_PYTHON, marker))


class RecordingProgress(Progress):
    """Keeps every step and log line of an install."""

    def __init__(self):
        super().__init__(quiet=True)
        self.steps, self.lines = [], []

    def step(self, message):
        self.steps.append(message)

    def line(self, text):
        self.lines.append(text)

    def built(self):
        return any(s.startswith("building image ") or s.startswith("Step ") for s in self.steps)

    def pulled(self):
        return any(s.startswith("pulling image ") for s in self.steps)
