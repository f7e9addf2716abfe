"""Where the engine takes a ``docker://`` registry's login from, and the Docker config's login handed to it.

Apptainer 1.4 takes a registry's credentials, first found, from ``APPTAINER_DOCKER_USERNAME`` and
``APPTAINER_DOCKER_PASSWORD`` (or ``SINGULARITY_DOCKER_*``); the file ``--authfile`` names; else
``~/.apptainer/docker-config.json`` when that file exists (instead of the next one, not before it); else
``~/.docker/config.json``, where ``apptainer registry login`` and ``docker login`` write.  It ignores
``DOCKER_CONFIG``.  nb-docker (docker-py) reads the Docker config ``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``: when that file has a login for the registry and the engine's own file has none, the
conversion gets ``--authfile`` naming it, so both backends pull with the same login.  Only the file's path is on
the command line; the credentials stay in the file.
"""
import base64
import binascii
import json
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

#: Variables giving the engine a login for every registry (the first one set is what it uses), and their passwords.
USERNAME_VARIABLES = ("APPTAINER_DOCKER_USERNAME", "SINGULARITY_DOCKER_USERNAME")
PASSWORD_VARIABLES = {"APPTAINER_DOCKER_USERNAME": "APPTAINER_DOCKER_PASSWORD",
                      "SINGULARITY_DOCKER_USERNAME": "SINGULARITY_DOCKER_PASSWORD"}
#: Docker Hub's names in a Docker config, as the registry of an image named without one.
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")


class Login(NamedTuple):
    """Where the engine's login for a registry comes from: ``source``, a variable's name or a file (None: it has
    none); ``authfile``, the Docker config to pass as ``--authfile`` (None: the engine finds the login itself)."""

    source: Optional[str]
    authfile: Optional[str]


def registry_host(image: str) -> str:
    """The registry of a Docker image name or ``docker://`` URI (Docker Hub when the name has none)."""
    name = image.split("://", 1)[-1]
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return _canonical(first)
    return DOCKER_HUB


def _canonical(host: str) -> str:
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def docker_config_file() -> Path:
    """The Docker config nb-docker reads: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    folder = os.environ.get("DOCKER_CONFIG")
    return Path(folder, "config.json") if folder else Path.home() / ".docker" / "config.json"


def engine_config_file(flavour: str) -> Path:
    """The file the engine reads logins from when given no ``--authfile``."""
    own = Path.home() / (".apptainer" if flavour == "apptainer" else ".singularity") / "docker-config.json"
    return own if own.exists() else Path.home() / ".docker" / "config.json"


def has_login(path: Path, host: str) -> bool:
    """Whether the Docker-style config file ``path`` has credentials (``auths``) or a helper (``credHelpers``) for
    ``host``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    keys = [key for section in ("auths", "credHelpers") if isinstance(data.get(section), dict)
            for key in data[section]]
    return host in {_canonical(re.sub(r"^https?://", "", key).split("/", 1)[0]) for key in keys}


def login_for(flavour: str, uri: str) -> Login:
    """The login the engine of ``flavour`` will offer the registry of ``uri``, and the ``--authfile`` that gives it
    the Docker config's when it would not read that one itself."""
    variable = next((name for name in USERNAME_VARIABLES if os.environ.get(name)), None)
    if variable is not None:
        return Login(variable, None)
    host = registry_host(uri)
    own = engine_config_file(flavour)
    if has_login(own, host):
        return Login(str(own), None)
    docker = docker_config_file()
    if has_login(docker, host):
        return Login(str(docker), str(docker))
    return Login(None, None)


def credentials(login: Login, uri: str) -> Optional[Tuple[str, str]]:
    """The ``(user, password)`` of ``login`` for the registry of ``uri``, for asking the registry a digest the way
    the engine would be asked (None: no login, or one a credential helper holds)."""
    if login.source in PASSWORD_VARIABLES:
        return os.environ[login.source], os.environ.get(PASSWORD_VARIABLES[login.source], "")
    if login.source is None:
        return None
    try:
        auths = json.loads(Path(login.source).read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    host = registry_host(uri)
    for key, entry in auths.items():
        if _canonical(re.sub(r"^https?://", "", key).split("/", 1)[0]) != host or not isinstance(entry, dict):
            continue
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
        try:
            user, _, password = base64.b64decode(entry.get("auth") or "").decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            continue
        if user:
            return user, password
    return None
