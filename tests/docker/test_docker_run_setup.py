"""The worker container's setup for GPU code, against the real engine: resource limits, and model caches
that keep downloaded weights between runs."""
import os
import resource
import uuid

import pytest

from nbcore.host.launch import open_backend

from nbtest import write

pytestmark = pytest.mark.docker

CACHE_MODULE = '''
import os
import resource


def limits():
    return {name: resource.getrlimit(getattr(resource, "RLIMIT_" + name.upper()))[1] for name in ("memlock", "stack")}


def download(name):
    path = os.path.join(os.environ["TORCH_HOME"], name)
    with open(path, "w") as f:
        f.write("weights")
    return path


def cached(name):
    return os.path.exists(os.path.join(os.environ["TORCH_HOME"], name))
'''


@pytest.fixture
def setup_project(tmp_path, monkeypatch, nbcore_home, base_images, docker_api):
    """A project with two small environments only this test uses; their images are removed afterwards."""
    from nb_docker.images import repository_for

    names = ["run-%s-%s" % (kind, uuid.uuid4().hex[:8]) for kind in ("defaults", "own")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cachemod.py").write_text(CACHE_MODULE)
    write(tmp_path / "nbcore.yaml", """
        environments:
          %s:
            python: "3.11"
            docker: {build_script: "true"}
          %s:
            python: "3.11"
            docker: {build_script: "true", ulimits: {stack: 16777216, memlock: null}}
        """ % tuple(names))
    yield names
    for name in names:
        for image in docker_api.images(name=repository_for(name)):
            for tag in image.get("RepoTags") or ():
                docker_api.remove_image(tag, force=True)


def expected(value, ceiling):
    return value if ceiling == -1 or 0 <= value <= ceiling else ceiling


def test_worker_limits_default_to_memlock_unlimited_and_a_64_mb_stack_or_what_the_daemon_grants(setup_project):
    from nb_docker.engine import ulimit_ceilings

    defaults, own = setup_project
    ceilings = ulimit_ceilings()
    unlimited = resource.RLIM_INFINITY
    with open_backend(defaults, "nbcore.yaml", backend="docker") as env:
        got = env.call("cachemod:limits")
    memlock = expected(-1, ceilings.get("memlock", -1))
    assert got == {"memlock": unlimited if memlock == -1 else memlock,
                   "stack": expected(67108864, ceilings.get("stack", -1))}
    with open_backend(own, "nbcore.yaml", backend="docker") as env:
        got = env.call("cachemod:limits")
    assert got["stack"] == 16777216


def test_downloaded_weights_persist_in_the_home_between_runs(setup_project, nbcore_home):
    defaults, _ = setup_project
    with open_backend(defaults, "nbcore.yaml", backend="docker") as env:
        inside = env.call("cachemod:download", "model.pth")
    with open_backend(defaults, "nbcore.yaml", backend="docker") as env:
        assert env.call("cachemod:cached", "model.pth")
    host = os.path.join(nbcore_home, "cache", "docker-models", str(os.getuid()), "TORCH_HOME", "model.pth")
    assert inside.endswith("/TORCH_HOME/model.pth") and open(host).read() == "weights"
