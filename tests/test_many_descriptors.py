"""A host with more than 1024 open file descriptors opens environments like any other (no ``select()``)."""
import os
import resource

import pytest

from nbcore import open_backend

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

EMPTY = {"environments": {"demo": {}}}


@pytest.fixture
def many_descriptors():
    """1100 descriptors open in this process, the limit raised to allow them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip("the hard limit on open files (%d) is below %d" % (hard, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert max(opened) > 1024
        yield
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("backend", ["python", "venv"])
@pytest.mark.parametrize("protocol", ["tcp-pickle", "tcp-pickle,shm-pickle"])
def test_open_with_more_than_1024_descriptors(many_descriptors, workdir, backend, protocol):
    with open_backend("demo", EMPTY, backend=backend, protocol=protocol) as env:
        assert env.call("operator:add", 2, 3) == 5
        assert env.protocol.startswith(protocol.split(",")[-1])
