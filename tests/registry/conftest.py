"""Fixtures of the published-image tests: the Docker daemon, the loopback registries of
``scripts/provision-registry``, and projects whose environments only these tests use.

The registries: an open one (``NBCORE_TEST_REGISTRY``, default 127.0.0.1:5055) and one behind
an htpasswd login (``NBCORE_TEST_AUTH_REGISTRY``, default 127.0.0.1:5056, user nbcore-ci).
Images are pushed under a namespace of their own per test run, so runs never see each other's.
"""
import os
import urllib.error
import urllib.request
import uuid

import pytest

from nbcore.testing import engine_unavailable

from registrytest import BASE_IMAGE_TEMPLATE, HOST_PYTHON, TEST_MODULE

pytest.importorskip("nb_docker", reason="nb-docker is not installed (pip install -e plugins/nb-docker)")


def _v2_status(address):
    try:
        return urllib.request.urlopen("http://%s/v2/" % address, timeout=3).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return exc


def _registry(variable, default, expected):
    address = os.environ.get(variable) or default
    status = _v2_status(address)
    if status != expected:
        engine_unavailable("registry", "no registry answers HTTP %d on http://%s/v2/ (got %s): run "
                                       "scripts/provision-registry" % (expected, address, status))
    return address


@pytest.fixture(scope="session")
def docker_api():
    from nb_docker.engine import api_client, unavailable_reason
    from nb_docker.images import image_exists

    reason = unavailable_reason()
    if reason:
        engine_unavailable("registry", reason)
    api = api_client()
    if not image_exists(api, BASE_IMAGE_TEMPLATE.format(python=HOST_PYTHON)):
        engine_unavailable("registry", "base image %s is missing: run scripts/provision-docker"
                           % BASE_IMAGE_TEMPLATE.format(python=HOST_PYTHON))
    return api


@pytest.fixture(scope="session")
def run_namespace():
    """A registry path no other test run pushes to."""
    return "nbcore-tests/%s" % uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def open_registry(docker_api, run_namespace):
    return "%s/%s" % (_registry("NBCORE_TEST_REGISTRY", "127.0.0.1:5055", 200), run_namespace)


@pytest.fixture(scope="session")
def auth_registry(docker_api, run_namespace):
    return "%s/%s" % (_registry("NBCORE_TEST_AUTH_REGISTRY", "127.0.0.1:5056", 401), run_namespace)


@pytest.fixture
def registry_env(tmp_path, monkeypatch, nbcore_home, docker_api):
    """A project folder (the cwd) and the name of its environment ``NAME``, unique to the test.

    ``DOCKER_CONFIG`` points at an empty folder (no credentials unless a test writes some); every image
    of a repository named after it (``NAME``, ``NAME-b``...), local or registry-named, is removed afterwards.
    """
    name = "reg-%s" % uuid.uuid4().hex[:8]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBCORE_DOCKER_BASE_IMAGE", BASE_IMAGE_TEMPLATE)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for variable in ("NBCORE_REGISTRY", "NBCORE_REGISTRY_PULL", "NBCORE_BACKEND", "NBCORE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "regtestmod.py").write_text(TEST_MODULE)
    yield name
    for image in docker_api.images():
        for tag in image.get("RepoTags") or ():
            if tag.rsplit(":", 1)[0].rsplit("/", 1)[-1].startswith(name):
                docker_api.remove_image(tag, force=True)
