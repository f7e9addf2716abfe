"""The Docker image nb-docker runs for an environment, run here through ``docker://``.

When a spec names no ``apptainer.image``, nb-apptainer asks nb-docker's
``docker-image`` capability which Docker image it would run: the environment's
published image in the configured registry (what ``nbcore push`` pushed), or a
ready ``docker.image``.  Install converts it to the cached SIF and records that
in the environment's folder, so later starts run it (no build); when the
registry does not have it, the environment is made as without it (the conda
fallback, or a SIF built here).  Without nb-docker nothing is asked.

A published image is fetched by content: the capability asks the registry for the
manifest digest once (with the login the engine would offer), the engine converts
``docker://REPOSITORY@DIGEST`` (and checks the content against it), the converted
image's ``org.nbcore.image-hash`` label must be the spec's, and the pinned URI is
what the environment records.
"""
import json
import os
import subprocess
from typing import NamedTuple, Optional

from nbcore.plugin import CapabilityMissing, DockerImage, DockerImageCapability, InstallError, get_registry
from nbcore.plugin.containers import UNREACHABLE_REGISTRY

from .registry_login import USERNAME_VARIABLES, credentials, login_for, registry_host

#: Variables that make the engine speak plain http to registries.
NO_HTTPS_VARIABLES = ("APPTAINER_NOHTTPS", "SINGULARITY_NOHTTPS")

#: The file in an environment's folder naming the Docker image it runs (JSON: ``uri``, ``python``; for a published
#: image also ``image`` and ``digest``).
MARKER = "docker-image"
#: The label of a published image holding the hash its spec must have (nb-docker's).
LABEL_IMAGE_HASH = "org.nbcore.image-hash"
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


def wanted(name: str, spec) -> Optional[DockerImage]:
    """nb-docker's image for environment ``name``, or None (nothing to fetch, or nb-docker not installed)."""
    capability = _capability()
    return None if capability is None else capability.image_for(name, spec)


def fingerprint(spec) -> Optional[dict]:
    """What names that image apart from the environment's name (registry and image hash, or the ready image)."""
    capability = _capability()
    return None if capability is None else capability.fingerprint(spec)


def _capability() -> Optional[DockerImageCapability]:
    try:
        return get_registry().capability("docker-image")
    except CapabilityMissing:
        return None


def resolve(flavour: str, name: str) -> Optional[str]:
    """The manifest digest of the published image ``name`` (None: the registry does not have it), asked of the
    registry with the login the engine would offer; :class:`InstallError` when the registry cannot tell."""
    login = login_for(flavour, SCHEME + name)
    plain = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes") for v in NO_HTTPS_VARIABLES)
    try:
        return _capability().digest(name, credentials(login, SCHEME + name), plain)
    except InstallError as exc:
        raise ResolveError(str(exc).rpartition(" failed: ")[2], login) from None


class ResolveError(InstallError):
    """The registry could not say which digest an image has; :attr:`reason` is its answer, :attr:`login` the login
    offered."""

    def __init__(self, reason: str, login):
        super().__init__(reason)
        self.reason, self.login = reason, login


def pinned(name: str, digest: str) -> str:
    """``REPOSITORY@DIGEST`` of the image ``name`` (``REPOSITORY:TAG``)."""
    repository = name.rpartition(":")[0] if ":" in name.rpartition("/")[2] else name
    return "%s@%s" % (repository, digest)


def check_label(engine, sif: str, image) -> None:
    """Remove the converted ``sif`` and raise :class:`InstallError` unless its image-hash label is the one the
    published ``image`` must have."""
    found = _labels(engine, sif).get(LABEL_IMAGE_HASH)
    if found != image.image_hash:
        os.unlink(sif)
        raise InstallError("the published image %s is not the image of this environment: its label %s is %s, "
                           "expected %s (publish it again with nbcore push)"
                           % (image.name, LABEL_IMAGE_HASH, found or "missing", image.image_hash))


def _labels(engine, sif: str) -> dict:
    done = subprocess.run([engine.executable, "inspect", "--json", "--labels", sif], capture_output=True, text=True)
    try:
        return json.loads(done.stdout)["data"]["attributes"]["labels"] or {}
    except (ValueError, KeyError, TypeError):
        raise InstallError("reading the labels of %s failed: %s" % (sif, done.stderr.strip() or done.stdout[:200])) \
            from None


def record(env, uri: str, python: str, name: Optional[str] = None, digest: Optional[str] = None) -> None:
    """Record that ``env`` runs the converted ``uri`` with ``python`` (for a published image: its ``name`` and the
    ``digest`` it was fetched at)."""
    data = {"uri": uri, "python": python}
    if digest:
        data.update(image=name, digest=digest)
    (env.path / MARKER).write_text(json.dumps(data) + "\n")


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
