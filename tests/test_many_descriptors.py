"""A host with more than 1024 open file descriptors opens environments like any other (no ``select()``)."""
import pytest

from nbcore import open_backend

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

EMPTY = {"environments": {"demo": {}}}


@pytest.mark.parametrize("backend", ["python", "venv"])
@pytest.mark.parametrize("protocol", ["tcp-pickle", "tcp-pickle,shm-pickle"])
def test_open_with_more_than_1024_descriptors(many_descriptors, workdir, backend, protocol):
    with open_backend("demo", EMPTY, backend=backend, protocol=protocol) as env:
        assert env.call("operator:add", 2, 3) == 5
        assert env.protocol.startswith(protocol.split(",")[-1])
