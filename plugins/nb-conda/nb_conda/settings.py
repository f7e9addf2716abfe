"""The ``conda:`` section of an environment spec, the environment.yml it may name, and site settings.

A spec resolves to a :class:`CondaRequest`: the channels, the conda match specs,
the pip requirements, the variables to record and an optional lock file.  Site
settings (engine choice, channel alias, solve limit, package cache) come from
environment variables: they say where packages come from, not which ones, so they
are not part of an environment's identity.
"""
import dataclasses
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nbcore.plugin import ConfigError, nbcore_home

#: JSON Schema of the ``conda:`` section.
CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "dependencies": {
            "type": "array",
            "description": "conda match specs (\"numpy >=1.24\", \"python=3.10\"); a {pip: [...]} item as in environment.yml",
            "items": {"anyOf": [
                {"type": "string"},
                {"type": "object", "additionalProperties": False,
                 "properties": {"pip": {"type": "array", "items": {"type": "string"}}}},
            ]},
        },
        "channels": {"type": "array", "items": {"type": "string"},
                     "description": "channel names or URLs, highest priority first (default: conda-forge)"},
        "pip": {"type": "array", "items": {"type": "string"}, "description": "pip requirements, installed after the conda packages"},
        "variables": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "variables set whenever the environment is activated"},
        "environment_file": {"type": "string", "description": "an environment.yml, relative to the config file"},
        "lock_file": {"type": "string", "description": "a lock file written by `nbcore lock`: installs exactly it, no solve"},
    },
}

DEFAULT_CHANNELS = ("conda-forge",)
DEFAULT_SOLVE_TIMEOUT = 600.0
#: environment.yml keys that say nothing about the packages (the env's name and place are nbcore's).
_IGNORED_FILE_KEYS = ("name", "prefix")
_FILE_KEYS = ("channels", "dependencies", "variables") + _IGNORED_FILE_KEYS
_NAME = re.compile(r"^\s*(?:[^\s:]+::)?([A-Za-z0-9_][A-Za-z0-9_.\-]*)")


@dataclasses.dataclass(frozen=True)
class CondaRequest:
    """What to put into a conda prefix, resolved from a spec (and its environment.yml)."""

    channels: Tuple[str, ...]
    specs: Tuple[str, ...]
    pip: Tuple[str, ...] = ()
    variables: Dict[str, str] = dataclasses.field(default_factory=dict)
    lock_file: Optional[Path] = None
    install_script: Optional[str] = None
    #: Folder relative channel paths, pip requirements and the install script start from.
    base_dir: Path = Path(".")


def package_name(spec: str) -> str:
    """The package a match spec names: ``conda-forge::numpy>=1`` -> ``numpy`` ('' when unparsable)."""
    match = _NAME.match(spec)
    return match.group(1).lower() if match else ""


def host_python() -> str:
    """The host's ``major.minor``: the default Python of an environment, as for the venv backend."""
    return "%d.%d" % sys.version_info[:2]


def _base_dir(spec) -> Path:
    return Path(spec.base_dir or os.getcwd())


def _referenced_file(spec, key) -> Optional[Path]:
    value = spec.section("conda").get(key)
    if value is None:
        return None
    path = (_base_dir(spec) / os.path.expanduser(value)).resolve()
    if not path.is_file():
        raise ConfigError("conda.%s: %s does not exist%s" % (key, path, " (" + spec.source + ")" if spec.source else ""))
    return path


def load_environment_file(path: Path) -> dict:
    """An environment.yml as conda writes it (name, channels, dependencies with a pip list, variables)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("conda.environment_file: cannot read %s: %s" % (path, str(exc).replace("\n", " "))) from None
    unknown = sorted(set(data) - set(_FILE_KEYS)) if isinstance(data, dict) else None
    if unknown is None or unknown:
        raise ConfigError("conda.environment_file: %s is not an environment.yml (%s); expected the keys %s"
                          % (path, "unknown keys " + ", ".join(unknown) if unknown else "not a mapping",
                             ", ".join(_FILE_KEYS)))
    return data


def _split_dependencies(items, where) -> Tuple[List[str], List[str]]:
    conda, pip = [], []
    for item in items or ():
        if isinstance(item, str):
            conda.append(item)
        elif isinstance(item, dict) and set(item) <= {"pip"}:
            pip.extend(str(p) for p in item.get("pip") or ())
        else:
            raise ConfigError("%s: a dependency must be a string or {pip: [...]}, not %r" % (where, item))
    return conda, pip


def conda_request(spec) -> CondaRequest:
    """Resolve an :class:`nbcore.plugin.EnvironmentSpec` into what the engine installs.

    Order: the environment file's dependencies, then the section's; the generic
    ``python`` adds ``python X.Y.*`` (the host's version when nothing names python);
    pip requirements come from the file's ``{pip: [...]}``, ``conda.pip`` and the
    generic ``packages``; ``pip`` itself is added when any are asked for.
    """
    section = spec.section("conda")
    env_file = _referenced_file(spec, "environment_file")
    file_data = load_environment_file(env_file) if env_file else {}
    conda, pip = _split_dependencies(file_data.get("dependencies"), "conda.environment_file %s" % env_file)
    more_conda, more_pip = _split_dependencies(section.get("dependencies"), "conda.dependencies")
    conda += more_conda
    pip += more_pip + list(section.get("pip") or ()) + list(spec.packages)
    names = {package_name(s) for s in conda}
    if spec.python:
        conda.append("python %s.*" % spec.python)
    elif "python" not in names:
        conda.append("python %s.*" % host_python())
    if pip and "pip" not in names:
        conda.append("pip")
    channels = tuple(section.get("channels") or file_data.get("channels") or DEFAULT_CHANNELS)
    variables = dict(file_data.get("variables") or {})
    variables.update(section.get("variables") or {})
    return CondaRequest(channels=channels, specs=tuple(conda), pip=tuple(pip),
                        variables={str(k): str(v) for k, v in variables.items()},
                        lock_file=_referenced_file(spec, "lock_file"), install_script=spec.install_script,
                        base_dir=_base_dir(spec))


def identity_material(spec) -> dict:
    """What the hash of a conda environment covers beyond the spec itself.

    The content of the referenced files (a changed environment.yml or lock file
    gives a new environment) and the default Python when the spec names none.
    """
    material = {}
    for key in ("environment_file", "lock_file"):
        path = _referenced_file(spec, key)
        if path is not None:
            material[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    if not spec.python:
        material["default_python"] = host_python()
    return material


def channel_alias() -> Optional[str]:
    """Where named channels live (``conda-forge`` -> ``ALIAS/conda-forge``); None = conda's default.

    ``NBCORE_CONDA_CHANNEL_ALIAS`` (then conda's own ``CONDA_CHANNEL_ALIAS``): an
    HPC site's proxy of anaconda.org, or a ``file://`` folder of channels.
    """
    alias = os.environ.get("NBCORE_CONDA_CHANNEL_ALIAS") or os.environ.get("CONDA_CHANNEL_ALIAS")
    return alias.rstrip("/") + "/" if alias else None


def channel_urls(request: CondaRequest) -> List[str]:
    """The request's channels as the engines get them: the alias applied to names, local paths as file:// URLs."""
    alias = channel_alias()
    out = []
    for channel in request.channels:
        if "://" in channel:
            out.append(channel)
        elif channel.startswith(("/", ".", "~")):
            out.append((request.base_dir / os.path.expanduser(channel)).resolve().as_uri())
        else:
            out.append(alias + channel if alias else channel)
    return out


def solve_timeout() -> float:
    """The solve limit in seconds (``NBCORE_CONDA_SOLVE_TIMEOUT``, default 600)."""
    raw = os.environ.get("NBCORE_CONDA_SOLVE_TIMEOUT")
    if not raw:
        return DEFAULT_SOLVE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError("NBCORE_CONDA_SOLVE_TIMEOUT=%r is not a positive number of seconds" % raw)
    return value


def package_cache() -> Path:
    """The package cache shared by every environment: the first of ``CONDA_PKGS_DIRS``, else under NBCORE_HOME."""
    dirs = [d.strip() for d in os.environ.get("CONDA_PKGS_DIRS", "").split(",") if d.strip()]
    return Path(os.path.expanduser(dirs[0])) if dirs else nbcore_home() / "conda" / "pkgs"


def repodata_cache() -> Path:
    """Where the embedded engine keeps the channels' repodata: under NBCORE_HOME, like every other cache."""
    return nbcore_home() / "conda" / "repodata"
