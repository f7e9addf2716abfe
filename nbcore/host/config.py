"""Loading and validating ``nbcore.yaml``.

Schema (see ``docs/configuration.md``)::

    backend: venv                 # optional default backend
    protocol: tcp-pickle,shm-pickle   # optional default protocol list
    registry: registry.example.org    # optional registry of published environment images
    environments:
      NAME:
        python: "3.11"            # interpreter version or range (default: the host's)
        packages: [numpy]         # pip requirements
        install_script: "..."     # shell, run inside the env after creation
        backends: [docker, venv]  # preferred order for automatic selection
        cwd: .                    # the worker's working directory (relative to this file's folder)
        pythonpath: [src]         # extra import folders (relative to this file's folder)
        docker: {...}             # one section per backend, validated by its plugin

Errors name the file, the line and the key.
"""
import dataclasses
import os
from pathlib import Path
from typing import Dict, Optional

from ..errors import ConfigError
from ..plugin.registry import known_backend_names
from ..spec import EnvironmentSpec

DEFAULT_FILE = "nbcore.yaml"

_SPECIFIER = r"\s*(~=|===?|!=|<=?|>=?)\s*\d+(\.\d+)*(\.\*)?\s*"
#: A spec's ``python``: a version prefix, or comma-separated PEP 440 specifiers.
PYTHON_PATTERN = r"^(\d+(\.\d+){0,2}|%s(,%s)*)$" % (_SPECIFIER, _SPECIFIER)

_GENERIC_SPEC = {
    "python": {"type": ["string", "number"], "pattern": PYTHON_PATTERN,
               "description": "Python version (\"3.10\", \"3.10.13\") or range (\">=3.9,<3.11\"); default: the host's"},
    "packages": {"type": "array", "items": {"type": "string"}, "description": "pip requirements"},
    "install_script": {"type": "string", "description": "shell script run inside the environment after creation"},
    "backends": {"type": "array", "items": {"type": "string"}, "description": "preferred backends, in order"},
    "cwd": {"type": "string", "minLength": 1,
            "description": "the worker's working directory, relative to the config file's folder (default: the host's)"},
    "pythonpath": {"type": ["array", "string"], "items": {"type": "string", "minLength": 1}, "minLength": 1,
                   "description": "extra import folders, relative to the config file's folder, first on sys.path"},
}


@dataclasses.dataclass
class Config:
    """A loaded configuration file."""

    environments: Dict[str, EnvironmentSpec]
    backend: Optional[str] = None
    protocol: Optional[str] = None
    path: Optional[Path] = None
    #: Registry of published environment images (``registry:``); each spec carries it too.
    registry: Optional[str] = None

    def spec(self, name: str) -> EnvironmentSpec:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            where = self.path or "the configuration"
            raise ConfigError("environment %r is not defined in %s (defined: %s)" % (name, where, known)) from None


def schema(backends) -> dict:
    """The JSON Schema of the whole file, with one section per registered backend."""
    spec_props = dict(_GENERIC_SPEC)
    for name in known_backend_names():
        spec_props.setdefault(name, {"type": "object"})
    for name, provider in backends.items():
        if name not in _GENERIC_SPEC:  # the ``python`` backend must not shadow the ``python:`` version key
            spec_props[name] = provider.config_schema
    spec = {"type": ["object", "null"], "additionalProperties": False, "properties": spec_props}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["environments"],
        "properties": {
            "backend": {"type": "string"},
            "protocol": {"type": "string"},
            "registry": {"type": "string", "pattern": r"^[^\s/]+(/[^\s/]+)*$",
                         "description": "registry (HOST[:PORT][/PATH]) of published environment images"},
            "environments": {"type": "object", "additionalProperties": spec,
                             "propertyNames": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}},
        },
    }


def parse_config(text: str, where: str, backends, base_dir=None) -> Config:
    """Parse and validate configuration text; ``where`` names it in errors.

    A text that was valid before, under the same schemas of the backend sections it
    uses, is taken from :mod:`.config_cache` without parsing it again (and without
    importing the plugins of the backends it does not use).
    """
    from . import config_cache

    key = config_cache.cache_key(text)
    checked = config_cache.CACHE.load(key)
    if not (_is_checked(checked) and checked.get("schemas") == _section_schemas(checked["data"], backends)):
        from .config_check import check

        checked = check(text, where, schema(backends))
        checked["schemas"] = _section_schemas(checked["data"], backends)
        config_cache.CACHE.store(key, checked)
    data, lines = checked["data"], checked["lines"]
    environments = {}
    for name, spec in (data.get("environments") or {}).items():
        source = "%s:%d" % (where, lines[name])
        environments[name] = EnvironmentSpec.from_dict(spec, source=source, base_dir=base_dir,
                                                       registry=data.get("registry"))
    return Config(environments, data.get("backend"), data.get("protocol"), registry=data.get("registry"))


def _section_schemas(data, backends) -> dict:
    """The schema of each backend section the environments of ``data`` use (None: a known backend not installed)."""
    names = {key for spec in (data.get("environments") or {}).values() if isinstance(spec, dict)
             for key in spec if key not in _GENERIC_SPEC}
    return {name: backends[name].config_schema if name in backends else None for name in sorted(names)}


def _is_checked(value):
    """Whether ``value`` has the shape of :func:`.config_check.check`'s result."""
    if not (isinstance(value, dict) and isinstance(value.get("data"), dict) and isinstance(value.get("lines"), dict)):
        return False
    environments = value["data"].get("environments")
    return isinstance(environments, dict) and all(isinstance(value["lines"].get(n), int) for n in environments)


def find_config_file(explicit=None) -> Optional[Path]:
    """``-c`` wins, then ``NBCORE_CONFIG``, then ``./nbcore.yaml`` when it exists."""
    candidate = explicit or os.environ.get("NBCORE_CONFIG")
    if candidate:
        return Path(candidate)
    default = Path(DEFAULT_FILE)
    return default if default.exists() else None


def load_config(path, backends) -> Config:
    """Read and validate the file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file %s not found (pass -c FILE or set NBCORE_CONFIG)" % path) from None
    except OSError as exc:
        raise ConfigError("cannot read config file %s: %s" % (path, exc.strerror)) from None
    config = parse_config(text, str(path), backends, base_dir=str(path.resolve().parent))
    config.path = path.resolve()
    return config


def config_from_dict(data: dict, backends, where="<dict>") -> Config:
    """Validate a configuration given as a Python dict (same schema as the file)."""
    import yaml

    return parse_config(yaml.safe_dump(data), where, backends, base_dir=os.getcwd())
