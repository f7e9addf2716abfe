"""A worker's descendants end with it, even those that left its process group (``setsid``, double fork)."""
import os
import subprocess
import sys
import time

import pytest

from nbcore import open_backend
from nbcore.testing import read_line, wait_gone
from nbtest import clean_environ, pid_alive, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

EMPTY = {"environments": {"demo": {}}}

ESCAPE = '''
import os
import subprocess
import sys
import time


def escapee(path):
    """Start a process that leaves the worker's session and parent (setsid, then a double fork); its pid."""
    code = ("import os, sys, time\\n"
            "os.setsid()\\n"
            "if os.fork():\\n"
            "    os._exit(0)\\n"
            "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\\n"
            "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\\n"
            "time.sleep(300)\\n")
    subprocess.run([sys.executable, "-c", code, path], check=True)
    for _ in range(500):
        if os.path.exists(path):
            return int(open(path).read())
        time.sleep(0.01)
    raise RuntimeError("the escapee did not start")
'''

HOST = '''
import sys
import time

from nbcore import open_backend

env = open_backend("demo", {"environments": {"demo": {}}}, backend=sys.argv[1])
print(env.call("escape:escapee", sys.argv[2]), flush=True)
time.sleep(300)
'''


@pytest.fixture
def project(workdir):
    write(workdir / "escape.py", ESCAPE)
    write(workdir / "host.py", HOST)
    return workdir


@pytest.mark.parametrize("backend", ["venv"])
def test_close_ends_a_setsid_grandchild(project, backend):
    escapees = []
    with open_backend("demo", EMPTY, backend=backend) as env:
        worker = env.call("os:getpid")
        for n in range(2):
            pid = env.call("escape:escapee", str(project / ("pid%d" % n)))
            assert pid_alive(pid) and os.getsid(pid) != os.getsid(worker)  # it left the worker's session
            escapees.append(pid)
    for pid in escapees:
        wait_gone(pid)


@pytest.mark.parametrize("backend", ["venv"])
def test_host_death_ends_a_setsid_grandchild(project, backend):
    host = subprocess.Popen([sys.executable, str(project / "host.py"), backend, str(project / "pid")],
                            cwd=str(project), env=clean_environ(), stdout=subprocess.PIPE, text=True)
    try:
        pid = int(read_line(host.stdout, 120))
        assert pid_alive(pid)
        host.kill()
        host.wait()
        wait_gone(pid)
    finally:
        host.kill()
        host.wait()
