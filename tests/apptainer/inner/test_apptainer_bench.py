"""``nbcore bench`` on the apptainer backend: every figure, its references run in the worker's container."""
import pytest

from nbtest import check_backend_bench

pytestmark = pytest.mark.apptainer


def test_bench_measures_a_container_environment(project):
    check_backend_bench("ap-sif", "apptainer")
