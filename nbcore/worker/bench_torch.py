"""The render loop ``nbcore bench`` runs with torch when the environment has it (torch imported lazily).

Unlike :func:`.bench_targets.render_loop` (a few passes over memory), this
render is compute-bound, like a neural renderer on the CPU: a tiny MLP
evaluated on a quarter-resolution grid of pixel coordinates, upsampled
bilinearly to 1080x1920x3 float32 and tone-mapped into the frame, on one
thread (``torch.set_num_threads(1)``).  Frames are numpy arrays
(``tensor.numpy()``), or, allocated, ``allocate_ndarray`` arrays the last
op writes into (``out=``).  The in-process reference runs in this process
(the host need not have torch).
"""
import math
import time

from .allocation import allocate_ndarray
from .bench_targets import RENDER_SHAPE, in_process
from .run_ahead import run_ahead

#: The MLP runs on a grid this many times coarser than the frame, per side.
DOWNSCALE = 4
#: Hidden units of the MLP's two hidden layers.
HIDDEN = 32
#: Frequencies of the sine/cosine encoding of each coordinate.
FREQUENCIES = 4
_scene = None


def torch_version():
    """The version of torch in this environment, else None."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)  # a str subclass, which would cross as a proxy


class Scene:
    """The fixed inputs of the render: the coarse grid's coordinates and the MLP's weights (seeded)."""

    def __init__(self):
        import torch

        torch.set_num_threads(1)
        height, width = RENDER_SHAPE[0] // DOWNSCALE, RENDER_SHAPE[1] // DOWNSCALE
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.coords = torch.stack([xs, ys], -1).reshape(-1, 2)
        self.frequencies = 2.0 ** torch.arange(FREQUENCIES) * math.pi
        generator = torch.Generator().manual_seed(0)
        inputs = 2 * 2 * FREQUENCIES + 1
        self.weights = [torch.randn(inputs, HIDDEN, generator=generator) * 0.5,
                        torch.randn(HIDDEN, HIDDEN, generator=generator) * 0.3,
                        torch.randn(HIDDEN, 3, generator=generator) * 0.3]
        self.grid = (height, width)

    def render(self, time_, out=None):
        """One frame at ``time_`` in [0, 1]: a new contiguous HWC tensor, or written into ``out``."""
        import torch
        import torch.nn.functional as F

        points = self.coords * (1.0 + 0.2 * time_)
        encoded = (points[:, :, None] * self.frequencies).reshape(points.shape[0], -1)
        x = torch.cat([torch.sin(encoded), torch.cos(encoded), torch.full((points.shape[0], 1), time_)], 1)
        x = torch.relu(x @ self.weights[0])
        x = torch.relu(x @ self.weights[1])
        x = torch.sigmoid(x @ self.weights[2])
        coarse = x.reshape(1, self.grid[0], self.grid[1], 3).permute(0, 3, 1, 2)  # NCHW view, channels-last memory
        fine = F.interpolate(coarse, size=RENDER_SHAPE[:2], mode="bilinear", align_corners=False)
        hwc = fine[0].permute(1, 2, 0)  # channels-last: a contiguous HWC view
        return torch.sqrt(hwc) if out is None else torch.sqrt(hwc, out=out)  # the tone map writes the frame


def scene():
    """The scene, made on first use."""
    global _scene
    if _scene is None:
        _scene = Scene()
    return _scene


def render_loop(count, allocated, ahead=0):
    """A generator rendering ``count`` frames with torch, as numpy arrays or ``allocate_ndarray`` arrays;
    with ``ahead``, run that many frames ahead."""
    frames = _render(count, allocated)
    return run_ahead(frames, ahead) if ahead else frames


def _render(count, allocated):
    import torch

    current = scene()
    for index in range(count):
        if allocated:
            out = allocate_ndarray(RENDER_SHAPE, "float32")
            current.render(index / count, torch.from_numpy(out))
            yield out
        else:
            yield current.render(index / count).numpy()


def in_process_fps(count, allocated):
    """Frames/s of the same loop consumed in this process, as a program without nbcore would run it."""
    clock = time.perf_counter
    start = clock()
    for frame in in_process(_render(count, allocated)):
        memoryview(frame).nbytes  # what a consumer of the frame does at the least: look at it
    return count / (clock() - start)
