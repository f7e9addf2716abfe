"""``nbcore bench`` on node n2, beside ``srun python -c pass`` on that node and submitit's per-call cost (same run).

``NBCORE_SLURM_BENCH_FULL=1`` runs the full bench instead of the quick one and prints the figures
(``-s``); the figures in plugins/nb-slurm/README.md come from such a run.  submitit's figure is
measured when submitit is installed in the test venv (``pip install submitit``), else left out.
"""
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import pytest

import nbcore
from nbcore.cli.bench import run_bench

pytestmark = pytest.mark.slurm


def _median_s(fn, count):
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def srun_python_pass():
    """A plain ``srun -w n2 python -c pass``: a fresh allocation and one step, as a user types it."""
    subprocess.run(["srun", "-w", "n2", "--quiet", sys.executable, "-c", "pass"], check=True, timeout=120)


def submitit_call_s(folder, count):
    """Median seconds of one submitit call of the same no-op on n2 (a job per call, pickles in ``folder``)."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    executor.update_parameters(timeout_min=10, slurm_additional_parameters={"nodelist": "n2"})

    def call():
        assert executor.submit(time.sleep, 0).result() is None  # the standard library's: the nodes import it

    call()
    return _median_s(call, count)


def test_bench_on_n2_beside_srun_and_submitit(slurm_cluster, project, slurm_config, tmp_path):
    full = os.environ.get("NBCORE_SLURM_BENCH_FULL") == "1"
    with nbcore.open_backend("e", config=slurm_config("n2")) as env:  # built before the clock starts
        env.call("slurmmod:where")
    result = run_bench("e", slurm_config("n2"), "slurm", quick=not full)
    assert result["backend"] == "slurm" and result["protocol"].startswith("tcp-pickle")
    srun_pass_s = _median_s(srun_python_pass, 5 if full else 2)
    submitit_s = None
    if importlib.util.find_spec("submitit") is not None:
        submitit_s = submitit_call_s(tmp_path / "submitit", 5 if full else 2)
    figures = {
        "noop_us": result["noop_us_median"], "pipe_noop_us": result["pipe_noop_us_median"],
        "frame_mb": result["frame_mb"], "memcpy_ms": result["memcpy_ms"],
        "frame_to_host_ms": result["frame_to_host_ms"], "frame_to_worker_ms": result["frame_to_worker_ms"],
        "start_ms": result["start_ms"], "python_start_ms": result["python_start_ms"],
        "srun_python_pass_ms": srun_pass_s * 1e3,
        "submitit_call_ms": None if submitit_s is None else submitit_s * 1e3,
        "ratios": dict(result["ratios"], start_vs_srun_python_pass=result["start_ms"] / (srun_pass_s * 1e3)),
    }
    if submitit_s is not None:
        figures["ratios"]["submitit_call_vs_noop"] = submitit_s * 1e6 / result["noop_us_median"]
    print("\nnb-slurm bench:", json.dumps(figures, indent=1))
    assert all(value > 0 for value in figures["ratios"].values())
