"""The environment whose image the host publishes and the apptainer tests run (``from publishedtest import ...``).

``test_in_container.py`` pushes its Docker image with ``nbcore push`` on the host, before the
inner run, to a namespace of the loopback registry of its own; the inner tests get that
registry and the pushed name through :data:`REGISTRY_VARIABLE` and :data:`IMAGE_VARIABLE`.
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
REGISTRY_VARIABLE = "NBCORE_TEST_PUBLISHED_REGISTRY"
IMAGE_VARIABLE = "NBCORE_TEST_PUBLISHED_IMAGE"


def config_text() -> str:
    return "environments:" + SPEC % {"sif": SIF}


def registry_unavailable_reason():
    """None when the loopback registry answers on /v2/, else why not."""
    try:
        urllib.request.urlopen("http://%s/v2/" % REGISTRY, timeout=3)
    except (urllib.error.URLError, OSError) as exc:
        return "no registry answers on http://%s/v2/ (%s): run scripts/provision-registry" % (REGISTRY, exc)
    return None
