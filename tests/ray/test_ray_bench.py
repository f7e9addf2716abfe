"""``nbcore bench`` on the second Ray node, beside a plain Ray actor call carrying the same frame (same run).

``NBCORE_RAY_BENCH_FULL=1`` runs the full bench instead of the quick one and prints the figures
(``-s``); the figures in plugins/nb-ray/README.md come from such a run.
"""
import json
import os
import statistics
import time

import numpy as np
import pytest

import nbcore
from nbcore.cli.bench import run_bench

pytestmark = pytest.mark.ray


def _median_ms(fn, count):
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def ray_actor_reference(ray, resource, nbytes, noop_calls, frame_calls):
    """Median ms of a Ray actor call on the node with ``resource``: no-op, frame back, frame there."""
    class Echo:  # defined here so that Ray ships it by value (the nodes cannot import test modules)
        def noop(self):
            return None

        def frame(self, nbytes):
            return np.ones(nbytes // 4, dtype=np.float32)

        def consume(self, array):
            return array.nbytes

    actor = ray.remote(Echo).options(num_cpus=0, resources={resource: 0.01}).remote()
    try:
        ray.get(actor.noop.remote())
        array = np.ones(nbytes // 4, dtype=np.float32)
        ray.get(actor.frame.remote(nbytes))
        return {
            "noop_ms": _median_ms(lambda: ray.get(actor.noop.remote()), noop_calls),
            "frame_to_host_ms": _median_ms(lambda: ray.get(actor.frame.remote(nbytes)), frame_calls),
            "frame_to_worker_ms": _median_ms(lambda: ray.get(actor.consume.remote(array)), frame_calls),
        }
    finally:
        ray.kill(actor)


def test_bench_on_the_second_node_beside_a_ray_actor_call(ray_cluster, project, ray_config):
    import ray

    full = os.environ.get("NBCORE_RAY_BENCH_FULL") == "1"
    started = time.perf_counter()  # cold: the environment is built on the node first
    with nbcore.open_backend("cold", config=ray_config("nodeB", name="cold")) as env:
        env.call("raymod:where")
    cold_ms = (time.perf_counter() - started) * 1e3
    result = run_bench("e", ray_config("nodeB"), "ray", quick=not full)
    assert result["backend"] == "ray" and result["protocol"].startswith("tcp-pickle")
    nbytes = int(result["frame_mb"] * 1e6)
    anchor = ray_actor_reference(ray, "nodeB", nbytes, 2000 if full else 100, 30 if full else 5)
    figures = {
        "noop_us": result["noop_us_median"], "pipe_noop_us": result["pipe_noop_us_median"],
        "ray_actor_noop_us": anchor["noop_ms"] * 1e3,
        "frame_mb": result["frame_mb"], "memcpy_ms": result["memcpy_ms"],
        "frame_to_host_ms": result["frame_to_host_ms"], "ray_actor_frame_to_host_ms": anchor["frame_to_host_ms"],
        "frame_to_worker_ms": result["frame_to_worker_ms"], "ray_actor_frame_to_worker_ms": anchor["frame_to_worker_ms"],
        "cold_start_ms": cold_ms, "start_ms": result["start_ms"], "python_start_ms": result["python_start_ms"],
        "ratios": dict(result["ratios"], **{
            "ray_actor_noop_vs_pipe": anchor["noop_ms"] * 1e3 / result["pipe_noop_us_median"],
            "ray_actor_frame_to_host_vs_memcpy": anchor["frame_to_host_ms"] / result["memcpy_ms"],
            "noop_vs_ray_actor": result["noop_us_median"] / (anchor["noop_ms"] * 1e3),
            "frame_to_host_vs_ray_actor": result["frame_to_host_ms"] / anchor["frame_to_host_ms"],
            "frame_to_worker_vs_ray_actor": result["frame_to_worker_ms"] / anchor["frame_to_worker_ms"],
        }),
    }
    print("\nnb-ray bench:", json.dumps(figures, indent=1))
    assert all(value > 0 for value in figures["ratios"].values())
