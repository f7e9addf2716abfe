"""Fixtures of the docker backend's tests: the daemon, the local base images, a shared built environment.

The base images are the ones ``scripts/provision-docker`` builds with debootstrap
(``nbcore-ci/python:X.Y``); builds use them through ``NBCORE_DOCKER_BASE_IMAGE``
because no registry is reachable in CI.
"""
import importlib.util
import os
import textwrap

import pytest

from nbcore.testing import engine_unavailable

from nbtest import ENGINE_TEST_MODULE

if importlib.util.find_spec("nb_docker") is None:
    engine_unavailable("docker", "nb-docker is not installed (pip install -e plugins/nb-docker)")

BASE_IMAGE_TEMPLATE = "nbcore-ci/python:{python}"
HOST_PYTHON = "3.11"

#: Code the workers import from the mounted working directory.
TEST_MODULE = ENGINE_TEST_MODULE + '''

def info():
    return {"python": "%d.%d.%d" % sys.version_info[:3], "uid": os.getuid(), "gid": os.getgid(),
            "home": os.environ.get("HOME"), "cwd": os.getcwd(), "pip_cert": os.environ.get("PIP_CERT"),
            "ca_readable": os.access(os.environ.get("PIP_CERT") or "/nonexistent", os.R_OK)}
'''


@pytest.fixture(scope="session")
def docker_api():
    """The low-level docker-py client; the test is skipped (or failed when required) without a daemon."""
    from nb_docker.engine import api_client, unavailable_reason

    reason = unavailable_reason()
    if reason:
        engine_unavailable("docker", reason)
    return api_client()


@pytest.fixture(scope="session")
def base_images(docker_api):
    """Point generated builds at the local base images; the host's Python one must exist."""
    from nb_docker.images import image_exists

    previous = os.environ.get("NBCORE_DOCKER_BASE_IMAGE")
    os.environ["NBCORE_DOCKER_BASE_IMAGE"] = BASE_IMAGE_TEMPLATE
    tag = BASE_IMAGE_TEMPLATE.format(python=HOST_PYTHON)
    if not image_exists(docker_api, tag):
        engine_unavailable("docker", "base image %s is missing: run scripts/provision-docker" % tag)
    yield BASE_IMAGE_TEMPLATE
    if previous is None:
        os.environ.pop("NBCORE_DOCKER_BASE_IMAGE", None)
    else:
        os.environ["NBCORE_DOCKER_BASE_IMAGE"] = previous


@pytest.fixture(scope="module")
def project(tmp_path_factory, nbcore_home, base_images):
    """A working directory holding ``nbdocker_testmod.py`` and an ``nbcore.yaml``; the tests run inside it."""
    folder = tmp_path_factory.mktemp("docker-project")
    folder.chmod(0o777)
    (folder / "nbdocker_testmod.py").write_text(TEST_MODULE)
    (folder / "nbcore.yaml").write_text(textwrap.dedent('''
        environments:
          dk-main:
            python: "%s"
            packages: [numpy]
            install_script: |
              python -c "import numpy" && echo "numpy importable" > "$VIRTUAL_ENV/install-script-ran"
            docker:
              image: "%s"
              build_script: |
                echo "ran as $(id -u)" > /etc/nbcore-build-script-ran
          dk-user:
            python: "%s"
            packages: [numpy]
            docker:
              user: "4321:4321"
          dk-ready:
            docker:
              image: "%s"
    ''') % (HOST_PYTHON, BASE_IMAGE_TEMPLATE.format(python=HOST_PYTHON), HOST_PYTHON,
            BASE_IMAGE_TEMPLATE.format(python=HOST_PYTHON)))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in ("NBCORE_BACKEND", "NBCORE_PROTOCOL", "NBCORE_CONFIG"):
            patch.delenv(name, raising=False)
        yield folder
