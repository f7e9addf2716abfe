"""A toy "method": lives in the isolated environment, imported by the worker."""
import numpy as np

from nbcore.worker import allocate_ndarray, is_cancelled


class Renderer:
    def __init__(self, height, width):
        self.height, self.width = height, width
        self.steps = 0

    def render(self, camera):
        """An RGB frame for ``camera`` (a 3-vector), built where the protocol sends it from."""
        frame = allocate_ndarray((self.height, self.width, 3), np.float32)
        frame[:] = np.asarray(camera, np.float32)
        return frame

    def train(self, steps):
        """Stream one loss value per step; stops early when the host cancels."""
        for step in range(steps):
            if is_cancelled():
                return
            self.steps += 1
            yield {"step": self.steps, "loss": 1.0 / self.steps}


def versions():
    import sys

    return {"python": sys.version.split()[0], "numpy": np.__version__}
