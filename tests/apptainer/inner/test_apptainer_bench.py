"""``nbcore bench`` on the apptainer backend: every figure, its references run in the worker's container."""
import pytest

from nbcore.cli.bench import format_report, run_bench

from nbtest import SHM_INSTALLED, check_bench_figures

pytestmark = pytest.mark.apptainer


def test_bench_measures_a_container_environment(project):
    result = run_bench("ap-sif", None, "apptainer", quick=True)
    assert result["backend"] == "apptainer" and result["frame_is_numpy"] is True
    assert result["protocol"] == ("shm-pickle5-buffers" if SHM_INSTALLED else "tcp-pickle5-buffers")
    check_bench_figures(result)
    assert "backend apptainer" in format_report(result)
