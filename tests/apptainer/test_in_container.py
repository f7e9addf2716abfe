"""The apptainer end-to-end tests, run inside the Debian sid container ``scripts/provision-apptainer`` builds.

Apptainer does not run on the project's Debian 12 machines; Debian sid's does, inside a Docker
container, as a non-root user, with ``/dev/fuse`` passed in.  This test starts that container with
the checkout bind-mounted at its own path and the Docker socket (for ``docker-daemon://``), runs
``inner/enter.sh`` (pytest of ``inner/`` with ``NBCORE_REQUIRE_ENGINES=apptainer``), streams its
output and fails when the inner run fails or collects nothing.  ``NBCORE_APPTAINER_PYTEST_ARGS``
adds arguments to the inner pytest (e.g. ``-k sandbox -x``).  Before that it publishes the image
of :mod:`publishedtest`'s environment with ``nbcore push`` (Docker, on this side).
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nbcore.plugin.process import LocalProcess, OutputTail
from nbcore.testing import engine_unavailable

from nbtest import REPO_ROOT, run_nbcore, write_docker_credentials
from publishedtest import (ENV_NAME, IMAGE_VARIABLE, LOGIN_IMAGE_VARIABLE, LOGIN_REGISTRY, LOGIN_REGISTRY_VARIABLE,
                           REGISTRY, REGISTRY_VARIABLE, config_text, registry_unavailable_reason)

pytestmark = pytest.mark.apptainer

IMAGE = "nbcore-ci/apptainer:sid"
CACHE = Path(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci")) / "apptainer"
TEST_IMAGES = ("python-numpy-3.11.sif", "python-numpy-3.11.sandbox", "python-numpy-3.11.docker.tar")
#: The local conda channel of scripts/provision-conda (for the conda fallback's test).
CONDA_CHANNELS = CACHE.parent / "conda" / "channels"
#: The container's venvs of nbcore (one per checkout), kept between runs.
VENVS = CACHE / "host-venvs"
#: How long the whole inner run may take.
TIMEOUT = 1500
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
#: The inner suite's pytest exit code when it collected nothing.
NO_TESTS_COLLECTED = 5


def container_argv(docker, name, variables=None):
    argv = [docker, "run", "--rm", "--name", name, "--network", "host", "--shm-size", "1g",
            "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined", "--device", "/dev/fuse",
            "-v", "%s:%s" % (REPO_ROOT, REPO_ROOT), "-v", "%s:%s:ro" % (CACHE, CACHE), "-v", "%s:%s" % (VENVS, VENVS)]
    if CONDA_CHANNELS.is_dir():
        argv += ["-v", "%s:%s:ro" % (CONDA_CHANNELS, CONDA_CHANNELS)]
    if os.path.exists("/var/run/docker.sock"):
        argv += ["-v", "/var/run/docker.sock:/var/run/docker.sock"]
    if os.path.isfile(HOST_CA):
        argv += ["-v", "%s:/etc/ssl/certs/ca-certificates.crt:ro" % os.path.realpath(HOST_CA),
                 "-e", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt"]
    for name_ in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                  "NBCORE_CI_REGISTRY_PORT", "NBCORE_CI_AUTH_REGISTRY_PORT"):
        if name_ in os.environ:
            argv += ["-e", name_]
    for item in sorted((variables or {}).items()):
        argv += ["-e", "%s=%s" % item]
    return argv + [IMAGE, "bash", str(REPO_ROOT / "tests" / "apptainer" / "inner" / "enter.sh"), str(VENVS)]


def unavailable_reason(docker):
    if docker is None:
        return "no docker command on PATH (the apptainer tests run in a Docker container): run scripts/provision-apptainer"
    if subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        return "the Docker daemon does not answer `docker info`: run scripts/provision-apptainer"
    if subprocess.run([docker, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        return "the image %s is missing: run scripts/provision-apptainer" % IMAGE
    missing = [name for name in TEST_IMAGES if not (CACHE / name).exists()]
    if missing:
        return "the test images %s are missing in %s: run scripts/provision-apptainer" % (", ".join(missing), CACHE)
    if not os.access("/dev/fuse", os.F_OK):
        return "this machine has no /dev/fuse to pass into the container"
    return registry_unavailable_reason()


def publish_test_image(folder):
    """Push the image of :mod:`publishedtest`'s environment with ``nbcore push`` to a namespace of this run in the
    open registry and in the one behind a login (with a Docker config file written here); return the variables that
    tell the inner tests where they are.  The local image is removed again."""
    from nbcore.host.launch import prepare

    (folder / "nbcore.yaml").write_text(config_text())
    namespace = "nbcore-tests/%s" % uuid.uuid4().hex[:10]
    docker_config = folder / "docker-config"
    write_docker_credentials(docker_config, LOGIN_REGISTRY)
    variables = {}
    for address, registry_variable, image_variable in ((REGISTRY, REGISTRY_VARIABLE, IMAGE_VARIABLE),
                                                      (LOGIN_REGISTRY, LOGIN_REGISTRY_VARIABLE, LOGIN_IMAGE_VARIABLE)):
        registry = "%s/%s" % (address, namespace)
        pushed = run_nbcore("push", ENV_NAME, "--backend", "docker", "--registry", registry, "--json", cwd=folder,
                            env={"DOCKER_CONFIG": str(docker_config)})
        assert pushed.returncode == 0, "publishing the test image to %s failed:\n%s" % (registry, pushed.stderr)
        [result] = json.loads(pushed.stdout)
        variables.update({registry_variable: registry, image_variable: result["image"]})
    _, provider, env = prepare(ENV_NAME, str(folder / "nbcore.yaml"), backend="docker", install=False)
    provider.remove(env)
    return variables


@pytest.mark.timeout(TIMEOUT + 60)
def test_apptainer_suite_passes_inside_the_provisioned_container(request, nbcore_home, tmp_path):
    docker = shutil.which("docker")
    reason = unavailable_reason(docker)
    if reason:
        engine_unavailable("apptainer", reason)
    published = publish_test_image(tmp_path)
    VENVS.mkdir(parents=True, exist_ok=True)
    name = "nbcore-apptainer-tests-%s" % uuid.uuid4().hex[:12]
    argv = container_argv(docker, name, published) + shlex.split(os.environ.get("NBCORE_APPTAINER_PYTEST_ARGS", ""))
    tail = OutputTail(max_lines=60)
    with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        sys.stderr.write("\n")
        process = LocalProcess(argv, stream=sys.stderr, prefix="  [apptainer] ", tail=tail, name="nbcore-apptainer-tests")
        try:
            code = process.wait(TIMEOUT)
        finally:
            process.kill()
            subprocess.run([docker, "rm", "-f", name], capture_output=True)
    assert code is not None, "the inner apptainer suite took longer than %d s:\n%s" % (TIMEOUT, tail.text())
    assert code != NO_TESTS_COLLECTED, "the inner apptainer suite collected no test"
    assert code == 0, "the inner apptainer suite failed (exit code %d); its last lines:\n%s" % (code, tail.text())
