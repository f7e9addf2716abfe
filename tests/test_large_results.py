"""A large result needs about its own size in the host, not twice (the frame is received into its final memory)."""
import subprocess
import sys

import pytest

from nbtest import SHM_INSTALLED, clean_environ

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_env", "nbcore_home")]

SIZE = 512 << 20
#: Peak RSS growth of the host allowed while it receives a SIZE-byte result.
BOUND = 1.3

TARGETS = '''
def array(n):
    import numpy as np
    out = np.empty(n, dtype=np.uint8)
    out.fill(1)
    return out


def blob(n):
    return b"\\1" * n
'''

#: A fresh host: opens the env, warms up with a small call, then reports the peak RSS growth of one large call.
HOST = '''
import resource, sys
from nbcore import open_backend
target, size = sys.argv[1], int(sys.argv[2])
with open_backend("large", config="nbcore.yaml") as env:
    env.call("targets:" + target, 1000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = env.call("targets:" + target, size)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert len(result) == size and result[size - 1] == 1
    print(env.protocol, (after - before) / size)
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = tmp_path_factory.mktemp("large-results")
    (path / "nbcore.yaml").write_text("environments:\n  large: {packages: [numpy]}\n")
    (path / "targets.py").write_text(TARGETS)
    (path / "host.py").write_text(HOST)
    return path


CASES = [("tcp-pickle", "array"), ("tcp-pickle", "blob")]
if SHM_INSTALLED:
    CASES += [("tcp-pickle,shm-pickle", "array"), ("tcp-pickle,shm-pickle", "blob")]


@pytest.mark.parametrize("protocol,target", CASES)
def test_peak_host_memory_of_a_large_result(project, protocol, target):
    result = subprocess.run([sys.executable, "host.py", target, str(SIZE)], cwd=str(project), capture_output=True,
                            text=True, timeout=600,
                            env=clean_environ({"NBCORE_PROTOCOL": protocol, "NBCORE_BACKEND": "venv"}))
    assert result.returncode == 0, result.stderr
    negotiated, growth = result.stdout.split()
    assert negotiated.startswith(protocol.split(",")[-1])
    assert float(growth) <= BOUND, "the host grew by %.2fx a %d MB result over %s" % (
        float(growth), SIZE >> 20, negotiated)
