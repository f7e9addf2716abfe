"""``nbcore bench`` on the docker backend: every figure, its references run in the worker's container."""
import pytest

from nbcore.cli.bench import format_report, run_bench

from nbtest import SHM_INSTALLED, check_bench_figures

pytestmark = pytest.mark.docker


def test_bench_measures_a_container_environment(project):
    result = run_bench("dk-main", None, "docker", quick=True)
    assert result["backend"] == "docker" and result["frame_is_numpy"] is True
    assert result["protocol"] == ("shm-pickle5-buffers" if SHM_INSTALLED else "tcp-pickle5-buffers")
    check_bench_figures(result)
    assert "backend docker" in format_report(result)
