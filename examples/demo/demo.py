"""Open the demo environment, build a remote object, move frames and stream training steps."""
import os
import time
from pathlib import Path

import numpy as np

from nbcore import open_backend

here = Path(__file__).resolve().parent
os.chdir(here)  # the worker runs in the host's current folder, so renderer.py imports there

with open_backend("demo", config=here / "nbcore.yaml") as env:
    print("backend %s, protocol %s, worker %s" % (env.backend, env.protocol, env.call("renderer:versions")))
    Renderer = env.remote("renderer:Renderer")
    renderer = Renderer(1080, 1920)
    frame = renderer.render([0.1, 0.2, 0.3])
    started = time.perf_counter()
    for _ in range(10):
        frame = renderer.render([0.1, 0.2, 0.3])
    print("frame %s %s, %.1f ms each" % (frame.shape, frame.dtype, (time.perf_counter() - started) * 100))
    assert np.allclose(frame[0, 0], [0.1, 0.2, 0.3])
    for record in renderer.train(3):
        print("step", record)
print("ok")
