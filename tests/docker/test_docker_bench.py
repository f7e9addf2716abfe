"""``nbcore bench`` on the docker backend: every figure, its references run in the worker's container."""
import pytest

from nbtest import check_backend_bench

pytestmark = pytest.mark.docker


def test_bench_measures_a_container_environment(project):
    check_backend_bench("dk-main", "docker")
