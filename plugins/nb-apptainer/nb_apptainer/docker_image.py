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
from nbcore.plugin.containers import UNREACHABLE_REGISTRY

from .registry_login import USERNAME_VARIABLES, registry_host

#: The file in an environment's folder naming the Docker image it runs (JSON: ``uri``, ``python``).
MARKER = "docker-image"
SCHEME = "docker://"
#: The registry's error codes for an image it does not have (distribution spec), as the engine quotes them.
ABSENT_CODES = ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
#: The registry's error code for a request without a valid login, as the engine quotes it; the distribution registry
#: gives the same words (``UNAUTHORIZED: authentication required``) for a missing login and a wrong one, so which of
#: the two it is comes from whether the engine offered one (:mod:`nb_apptainer.registry_login`).
LOGIN_CODE = "UNAUTHORIZED"
LOG_IN = "docker login HOST, or apptainer registry login --username USER docker://HOST"
NO_LOGIN_HINT = ("the registry needs a login and none is set for HOST: run %s (both write ~/.docker/config.json; a "
                 "DOCKER_CONFIG folder's config.json is passed on too), or set APPTAINER_DOCKER_USERNAME and "
                 "APPTAINER_DOCKER_PASSWORD" % LOG_IN)
REFUSED_HINT = "the registry refused the credentials for HOST from SOURCE: log in again (%s)" % LOG_IN
REFUSED_VARIABLE_HINT = ("the registry refused the credentials for HOST from SOURCE: check APPTAINER_DOCKER_USERNAME "
                         "and APPTAINER_DOCKER_PASSWORD (they are used before any config file)")
#: Other registry failures, recognised in the engine's words (error codes and Go's error texts, as they are
#: cased), and what to do about them; then those of every engine (:data:`UNREACHABLE_REGISTRY`).
FAILURE_HINTS = (
    ("DENIED", "the registry denied access: check the account's rights to the image"),
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


def explain(reason: str, name: str, login=None) -> str:
    """The engine's ``reason`` for failing to fetch image ``name``, after what to do about it when it is a known
    registry failure; ``login`` (a :class:`~nb_apptainer.registry_login.Login`) tells a refused login from none."""
    host = registry_host(name)
    if LOGIN_CODE in reason:
        source = login.source if login is not None else None
        said = NO_LOGIN_HINT if source is None else (
            REFUSED_VARIABLE_HINT if source in USERNAME_VARIABLES else REFUSED_HINT).replace("SOURCE", source)
        return "%s [%s]" % (said.replace("HOST", host), reason)
    found = [said for seen, said in FAILURE_HINTS if seen in reason]
    found += [said for seen, said in UNREACHABLE_REGISTRY if seen in reason.lower()]
    return "%s [%s]" % (found[0], reason) if found else reason
