"""An environment's published image in a registry that needs a login, run by apptainer through ``docker://``: no
login and a refused one are one-line errors with no build; the Docker config's login (a ``DOCKER_CONFIG`` folder,
which Apptainer itself ignores) and ``apptainer registry login``'s both pull it.  Against the real Apptainer and
the loopback registry behind htpasswd, no mock.

The host pushed the image there with a Docker config file of its own (``test_in_container.py``).  Each test starts
from an empty home, image cache and Docker config, and forces the install, so a login that worked before cannot
hide a later one that does not (the layer cache is shared: a cached layer is still fetched only after the
registry accepted the login).
"""
import os
import subprocess

import pytest

from nb_apptainer.registry_login import USERNAME_VARIABLES

from innertest import CountingProgress, one_error_line, open_env
from nbtest import AUTH_PASSWORD, AUTH_USER, run_nbcore, write_docker_credentials
from publishedtest import ENV_NAME

pytestmark = [pytest.mark.apptainer, pytest.mark.timeout(900)]


@pytest.fixture
def login_registry(project, login_published, tmp_path, monkeypatch):
    """``(host, image)`` of the published image behind the login, with ``NBCORE_REGISTRY`` naming its registry, an
    empty home and image cache for this test, and no login anywhere."""
    registry, image = login_published
    monkeypatch.setenv("APPTAINER_CACHEDIR", os.environ.get("APPTAINER_CACHEDIR")
                       or os.path.join(os.path.expanduser("~"), ".apptainer", "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "images"))
    monkeypatch.setenv("NBCORE_REGISTRY", registry)
    for name in ("DOCKER_CONFIG", "NBCORE_REGISTRY_PULL") + USERNAME_VARIABLES + ("APPTAINER_DOCKER_PASSWORD",):
        monkeypatch.delenv(name, raising=False)
    return registry.split("/", 1)[0], image


def install_error(image, env=None):
    """``nbcore install --force`` of the environment, which must fail before any build; its error line."""
    result = run_nbcore("install", ENV_NAME, "--backend", "apptainer", "--force", env=env)
    line = one_error_line(result.stderr)
    assert result.returncode == 2, result.stderr
    assert line.startswith("nbcore: error: converting the published image docker://%s to a SIF file failed: "
                           % image), line
    assert line.endswith("(or set NBCORE_REGISTRY_PULL=fallback to go on without it)"), line
    assert "building" not in result.stderr, "a build ran: %s" % result.stderr
    return line


def pulls_and_runs(image):
    """Install through the engine's pull (no build), then a call in the environment."""
    from nbcore.host.launch import prepare
    from nbcore.plugin.store import ensure_installed

    progress = CountingProgress()
    _, provider, env = prepare(ENV_NAME, "nbcore.yaml", backend="apptainer", install=False)
    ensure_installed(provider, env, progress, force=True)
    pinned = "running the published image docker://%s@sha256:" % image.rpartition(":")[0]  # by the resolved digest
    assert any(s.startswith(pinned) and s.endswith(" (nothing to build)") for s in progress.steps), progress.steps
    assert not any(s.startswith("building ") or "conda" in s for s in progress.steps), progress.steps
    with open_env(ENV_NAME) as remote:
        assert remote.call("nbapptainer_testmod:read", "/published-marker") == "published\n"


def test_login_missing_is_a_one_line_error_naming_the_image_and_how_to_log_in(login_registry):
    host, image = login_registry
    line = install_error(image)
    assert ("the registry needs a login and none is set for %s: run docker login %s, or apptainer registry login "
            "--username USER docker://%s" % (host, host, host)) in line
    assert "APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD" in line
    assert "UNAUTHORIZED: authentication required" in line, "the registry's own words are kept"


def test_login_refused_from_the_docker_config_or_the_variables_is_a_one_line_error(login_registry, tmp_path):
    host, image = login_registry
    write_docker_credentials(tmp_path / "docker-config", host, password="wrong")
    line = install_error(image, env={"DOCKER_CONFIG": str(tmp_path / "docker-config")})
    assert "the registry refused the credentials for %s from %s: log in again" % (
        host, tmp_path / "docker-config" / "config.json") in line

    line = install_error(image, env={"APPTAINER_DOCKER_USERNAME": AUTH_USER, "APPTAINER_DOCKER_PASSWORD": "wrong"})
    assert ("the registry refused the credentials for %s from APPTAINER_DOCKER_USERNAME: check "
            "APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD" % host) in line


def test_login_of_a_docker_config_folder_is_handed_to_apptainer_and_the_image_runs(login_registry, tmp_path,
                                                                                     monkeypatch):
    host, image = login_registry
    write_docker_credentials(tmp_path / "docker-config", host)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # Apptainer alone would not read it
    pulls_and_runs(image)


def test_login_of_apptainer_registry_login_is_read_by_the_engine_and_the_image_runs(login_registry, engine):
    host, image = login_registry
    login = subprocess.run([engine.executable, "registry", "login", "--username", AUTH_USER, "--password-stdin",
                            "docker://" + host], input=AUTH_PASSWORD, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    assert os.path.isfile(os.path.expanduser("~/.docker/config.json")), "where Apptainer 1.4 writes its login"
    pulls_and_runs(image)
