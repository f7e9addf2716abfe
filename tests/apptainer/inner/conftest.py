"""Fixtures of the apptainer tests run against a real Apptainer (inside the provisioned container).

The images come from ``scripts/provision-apptainer``: ``nbcore-ci/python-numpy:3.11`` in the
Docker daemon, and in ``NBCORE_CI_CACHE/apptainer`` its ``docker save`` archive, its root
filesystem as a sandbox folder and a SIF built from that sandbox.
"""
import os
import textwrap
from pathlib import Path

import pytest

from nbcore.testing import engine_unavailable

from nbtest import ENGINE_TEST_MODULE
from publishedtest import IMAGE_VARIABLE, LOGIN_IMAGE_VARIABLE, LOGIN_REGISTRY_VARIABLE, REGISTRY_VARIABLE
from publishedtest import SPEC as PUBLISHED_SPEC

IMAGES = Path(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci")) / "apptainer"
SIF = IMAGES / "python-numpy-3.11.sif"
SANDBOX = IMAGES / "python-numpy-3.11.sandbox"
ARCHIVE = IMAGES / "python-numpy-3.11.docker.tar"
DAEMON_IMAGE = "nbcore-ci/python-numpy:3.11"
#: The same image in the loopback registry of scripts/provision-registry (plain http: APPTAINER_NOHTTPS).
REMOTE_IMAGE = "127.0.0.1:%s/%s" % (os.environ.get("NBCORE_CI_REGISTRY_PORT", "5055"), DAEMON_IMAGE)
#: The local conda channel scripts/provision-conda builds (python 3.11, pip, nbtest-activation).
CONDA_CHANNELS = Path(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci")) / "conda" / "channels"

#: Code a worker of the conda fallback imports (its prefix has no numpy).
CONDA_MODULE = '''
import os
import sys


def where():
    return {"prefix": sys.prefix, "python": "%d.%d.%d" % sys.version_info[:3],
            "activated": os.environ.get("NBTEST_ACTIVATED"), "conda_prefix": os.environ.get("CONDA_PREFIX")}
'''

#: Code the workers import from the bound working directory.
TEST_MODULE = ENGINE_TEST_MODULE + '''

def info():
    return {"python": "%d.%d.%d" % sys.version_info[:3], "uid": os.getuid(), "gid": os.getgid(),
            "home": os.environ.get("HOME"), "home_entries": sorted(os.listdir(os.environ["HOME"])),
            "cwd": os.getcwd(), "pid": os.getpid(), "environ": dict(os.environ),
            "ca_readable": os.access(os.environ.get("PIP_CERT") or "/nonexistent", os.R_OK)}
'''

CONFIG = '''
environments:
  ap-sandbox:
    apptainer: {image: "%(sandbox)s"}
  ap-sif:
    apptainer: {image: "%(sif)s"}
  ap-daemon:
    apptainer: {image: "docker-daemon://%(daemon)s"}
  ap-archive:
    apptainer: {image: "docker-archive://%(archive)s"}
  ap-remote:
    apptainer: {image: "docker://%(remote)s"}
  ap-built:
    python: "3.11"
    install_script: |
      python -c "import numpy" && echo "numpy importable" > "$VIRTUAL_ENV/install-script-ran"
    apptainer:
      image: "%(sif)s"
      build_script: |
        echo "ran as $(id -u)" > /etc/nbcore-build-script-ran
  ap-failing-build:
    apptainer:
      image: "%(sif)s"
      build_script: |
        echo "about to fail"
        exit 3
  ap-conda:
    python: "3.11"
    conda: {dependencies: [nbtest-activation]}
    apptainer:
      image: "docker-daemon://nbcore-ci/no-such-image:2"
      fallback_image: "%(sif)s"
  ap-missing:
    apptainer: {image: "/nonexistent/image.sif"}
  ap-missing-daemon:
    apptainer: {image: "docker-daemon://nbcore-ci/no-such-image:1"}
''' + PUBLISHED_SPEC


@pytest.fixture(scope="session")
def engine():
    """The Apptainer engine; the test is skipped (or failed, as the engine is required here) without one."""
    try:
        from nb_apptainer.engine import require_engine, unavailable_reason
    except ImportError:
        engine_unavailable("apptainer", "nb-apptainer is not installed (pip install -e plugins/nb-apptainer)")
    reason = unavailable_reason()
    if reason:
        engine_unavailable("apptainer", reason)
    missing = [str(p) for p in (SIF, SANDBOX, ARCHIVE) if not p.exists()]
    if missing:
        engine_unavailable("apptainer", "test images missing (%s): run scripts/provision-apptainer" % ", ".join(missing))
    return require_engine()


@pytest.fixture(scope="session")
def project(tmp_path_factory, nbcore_home, engine):
    """A working directory holding ``nbapptainer_testmod.py`` and an ``nbcore.yaml``; the tests run inside it."""
    folder = tmp_path_factory.mktemp("apptainer-project")
    (folder / "nbapptainer_testmod.py").write_text(TEST_MODULE)
    (folder / "nbapptainer_condamod.py").write_text(CONDA_MODULE)
    (folder / "nbcore.yaml").write_text(textwrap.dedent(CONFIG) % {
        "sandbox": SANDBOX, "sif": SIF, "daemon": DAEMON_IMAGE, "archive": ARCHIVE, "remote": REMOTE_IMAGE})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in ("NBCORE_BACKEND", "NBCORE_PROTOCOL", "NBCORE_CONFIG"):
            patch.delenv(name, raising=False)
        patch.setenv("APPTAINER_NOHTTPS", "1")  # the loopback registry speaks plain http
        yield folder


@pytest.fixture
def conda_channel(monkeypatch):
    """nb-conda's embedded engine with the local channel as ``conda-forge`` (the conda tests' setup)."""
    if not (CONDA_CHANNELS / "conda-forge" / "noarch" / "repodata.json").is_file():
        engine_unavailable("apptainer", "no local conda channel in %s: run scripts/provision-conda" % CONDA_CHANNELS)
    monkeypatch.setenv("NBCORE_CONDA_CHANNEL_ALIAS", CONDA_CHANNELS.as_uri())
    monkeypatch.setenv("NBCORE_CONDA_ENGINE", "embedded")
    return CONDA_CHANNELS


def _published_by_the_host(registry_variable, image_variable):
    registry, image = os.environ.get(registry_variable), os.environ.get(image_variable)
    if not (registry and image):
        engine_unavailable("apptainer", "no image was published for these tests (%s and %s unset): run them through "
                                        "tests/apptainer/test_in_container.py" % (registry_variable, image_variable))
    return registry, image


@pytest.fixture(scope="session")
def published():
    """``(registry, image)``: where the host published the image of ``ap-published`` (test_in_container.py)."""
    return _published_by_the_host(REGISTRY_VARIABLE, IMAGE_VARIABLE)


@pytest.fixture(scope="session")
def login_published():
    """``(registry, image)``: the same in the registry behind a login."""
    return _published_by_the_host(LOGIN_REGISTRY_VARIABLE, LOGIN_IMAGE_VARIABLE)
