"""The environment whose image the host publishes and the apptainer tests run (``from publishedtest import ...``).

``test_in_container.py`` pushes its Docker image with ``nbcore push`` on the host, before the
inner run, to a namespace of its own in each loopback registry (the open one, and the one behind a
login, with a Docker config file it writes); the inner tests get those registries and the pushed
names through :data:`REGISTRY_VARIABLE` and :data:`IMAGE_VARIABLE`, :data:`LOGIN_REGISTRY_VARIABLE`
and :data:`LOGIN_IMAGE_VARIABLE`.
Both sides read the same spec, with ``python`` pinned, so they compute the same image hash.
"""
import os
import urllib.error
import urllib.request
from pathlib import Path

ENV_NAME = "ap-published"
#: The spec (an entry under ``environments:``); ``%(sif)s`` is the fallback image of its conda section.
SPEC = '''
  ap-published:
    python: "3.11"
    conda: {dependencies: [nbtest-activation]}
    docker:
      image: "nbcore-ci/python-numpy:3.11"
      build_script: "echo published > /published-marker"
    apptainer: {fallback_image: "%(sif)s"}
'''
SIF = Path(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci")) / "apptainer" / "python-numpy-3.11.sif"
#: The loopback registry of scripts/provision-registry.
REGISTRY = "127.0.0.1:%s" % os.environ.get("NBCORE_CI_REGISTRY_PORT", "5055")
#: The one behind an htpasswd login (nbtest.AUTH_USER).
LOGIN_REGISTRY = "127.0.0.1:%s" % os.environ.get("NBCORE_CI_AUTH_REGISTRY_PORT", "5056")
REGISTRY_VARIABLE = "NBCORE_TEST_PUBLISHED_REGISTRY"
IMAGE_VARIABLE = "NBCORE_TEST_PUBLISHED_IMAGE"
LOGIN_REGISTRY_VARIABLE = "NBCORE_TEST_LOGIN_REGISTRY"
LOGIN_IMAGE_VARIABLE = "NBCORE_TEST_LOGIN_IMAGE"


def config_text() -> str:
    return "environments:" + SPEC % {"sif": SIF}


def registry_unavailable_reason():
    """None when the open loopback registry answers on /v2/ and the other one asks for a login there, else why not."""
    for address, expected in ((REGISTRY, 200), (LOGIN_REGISTRY, 401)):
        try:
            status = urllib.request.urlopen("http://%s/v2/" % address, timeout=3).status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError) as exc:
            status = exc
        if status != expected:
            return "no registry answers HTTP %d on http://%s/v2/ (got %s): run scripts/provision-registry" % (
                expected, address, status)
    return None
