"""The Docker image nb-docker runs for an environment, run here through ``docker://``.

When a spec names no ``apptainer.image``, nb-apptainer asks nb-docker's
``docker-image`` capability which Docker image it would run: the environment's
published image in the configured registry (what ``nbcore push`` pushed), or a
ready ``docker.image``.  Install converts it to the cached SIF and records that
in the environment's folder, so later starts run it (no build); when the
registry does not have it, the environment is made as without it (the conda
fallback, or a SIF built here).  Without nb-docker nothing is asked.
"""
import json
from typing import NamedTuple, Optional

from nbcore.plugin import CapabilityMissing, get_registry

#: The file in an environment's folder naming the Docker image it runs (JSON: ``uri``, ``python``).
MARKER = "docker-image"
SCHEME = "docker://"
#: The registry's error codes for an image it does not have (distribution spec), as the engine quotes them.
ABSENT_CODES = ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
#: Other registry failures, recognised in the engine's words (error codes and Go's error texts, as they are
#: cased), and what to do about them.
FAILURE_HINTS = (
    ("UNAUTHORIZED", "the registry needs a login: apptainer registry login --username USER docker://HOST, or set "
                     "APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD"),
    ("DENIED", "the registry denied access: check the account's rights to the image"),
    ("connection refused", "cannot reach the registry (connection refused): is it running, is the address right?"),
    ("no such host", "cannot reach the registry (unknown host): check the address"),
    ("server gave HTTP response to HTTPS client", "the registry speaks plain http: set APPTAINER_NOHTTPS=1"),
)


class Recorded(NamedTuple):
    """The Docker image an environment's install chose to run."""

    uri: str
    python: str


def wanted(name: str, spec):
    """nb-docker's image for environment ``name`` (``name``, ``python``, ``published``), or None (nothing to
    fetch, or nb-docker not installed)."""
    capability = _capability()
    return None if capability is None else capability.image_for(name, spec)


def fingerprint(spec) -> Optional[dict]:
    """What names that image apart from the environment's name (registry and image hash, or the ready image)."""
    capability = _capability()
    return None if capability is None else capability.fingerprint(spec)


def _capability():
    try:
        return get_registry().capability("docker-image")
    except CapabilityMissing:
        return None


def record(env, uri: str, python: str) -> None:
    """Record that ``env`` runs the converted ``uri`` with ``python``."""
    (env.path / MARKER).write_text(json.dumps({"uri": uri, "python": python}) + "\n")


def recorded(env) -> Optional[Recorded]:
    """The Docker image ``env``'s install chose, or None (it runs what the spec makes without one)."""
    try:
        data = json.loads((env.path / MARKER).read_text())
        return Recorded(data["uri"], data["python"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_absent(reason: str) -> bool:
    """Whether the engine's ``reason`` for a failed conversion says the registry does not have the image."""
    said = reason.upper().replace(" ", "_")
    return any(code in said for code in ABSENT_CODES)


def explain(reason: str, name: str) -> str:
    """The engine's ``reason`` for failing to fetch image ``name``, after what to do about it when it is a known
    registry failure."""
    for seen, said in FAILURE_HINTS:
        if seen in reason:
            return "%s [%s]" % (said.replace("HOST", name.split("/", 1)[0]), reason)
    return reason
