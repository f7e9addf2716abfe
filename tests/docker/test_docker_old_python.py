"""The worker on the oldest Python CI has, 3.9 (Debian bullseye's), inside the real Docker engine.

The base image holds nothing but Debian's python3: the staged worker code imports with the
standard library alone there, and a worker started by the docker backend from that image
answers every kind of call.
"""
import shutil
import subprocess

import pytest

from nbcore.host.launch import prepare, start
from nbcore.host.staging import stage_worker
from nbcore.plugin.progress import Progress
from nbcore.plugin.registry import get_registry
from nbcore.testing import engine_unavailable

from nbtest import SHM_INSTALLED, STDLIB_ONLY_CHECKER, write

pytestmark = pytest.mark.docker

PYTHON = "3.9"
IMAGE = "nbcore-ci/python:" + PYTHON

MODULE = '''
import sys
import threading


def version():
    return list(sys.version_info[:2])


def count(n):
    yield from range(n)


class Locked:
    def __init__(self):
        self.lock = threading.Lock()

    def get(self):
        return 7


def fail():
    raise ValueError("from the old worker")
'''


@pytest.fixture(scope="module")
def old_image(docker_api):
    from nb_docker.images import image_exists

    if not image_exists(docker_api, IMAGE):
        engine_unavailable("docker", "base image %s is missing: run scripts/provision-docker" % IMAGE)
    return IMAGE


def test_staged_worker_code_imports_with_the_stdlib_only_on_python_39(old_image, tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        engine_unavailable("docker", "no docker command on PATH")
    staged = stage_worker(tmp_path / "home", [p.worker_module for p in get_registry().protocols.values()])
    write(tmp_path / "thirdparty" / "nbt_thirdparty.py", "X = 1\n")
    result = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "-v", "%s:/staged:ro" % staged,
         "-v", "%s:/thirdparty:ro" % (tmp_path / "thirdparty"), old_image,
         "python3", "-s", "-E", "-c", STDLIB_ONLY_CHECKER, "/staged", "/thirdparty"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "on Python %s;" % PYTHON in result.stdout, result.stdout


def test_docker_worker_on_python_39_answers_every_kind_of_call(old_image, project):
    write(project / "nbt_old_python_mod.py", MODULE)
    config = {"environments": {"dk-py39-bare": {"docker": {"image": old_image}}}}
    config_obj, provider, env = prepare("dk-py39-bare", config, backend="docker", progress=Progress(quiet=True))
    with start(config_obj, provider, env) as remote:
        assert remote.worker_python.startswith(PYTHON + ".")
        assert remote.protocol == ("shm-pickle5-buffers" if SHM_INSTALLED else "tcp-pickle5-buffers")
        assert remote.call("nbt_old_python_mod:version") == [3, 9]
        assert list(remote.call("nbt_old_python_mod:count", 4)) == [0, 1, 2, 3]
        assert remote.call("nbt_old_python_mod:Locked").get() == 7
        with pytest.raises(ValueError, match="from the old worker") as info:
            remote.call("nbt_old_python_mod:fail")
        assert "nbt_old_python_mod.py" in info.value.__cause__.text
        big = b"x" * 3_000_000
        assert remote.call("operator:add", big, b"y") == big + b"y"
