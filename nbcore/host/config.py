"""Loading and validating ``nbcore.yaml``.

Schema (see ``docs/configuration.md``)::

    backend: venv                 # optional default backend
    protocol: tcp-pickle,shm-pickle   # optional default protocol list
    environments:
      NAME:
        python: "3.11"            # interpreter version (default: the host's)
        packages: [numpy]         # pip requirements
        install_script: "..."     # shell, run inside the env after creation
        backends: [docker, venv]  # preferred order for automatic selection
        docker: {...}             # one section per backend, validated by its plugin

Errors name the file, the line and the key.
"""
import dataclasses
import os
from pathlib import Path
from typing import Dict, Optional

import yaml

from ..errors import ConfigError
from ..plugin.registry import KNOWN_BACKENDS
from ..spec import EnvironmentSpec

DEFAULT_FILE = "nbcore.yaml"

_GENERIC_SPEC = {
    "python": {"type": ["string", "number"], "pattern": r"^\d+(\.\d+){0,2}$",
               "description": "Python version, e.g. \"3.9\" (default: the host's version)"},
    "packages": {"type": "array", "items": {"type": "string"}, "description": "pip requirements"},
    "install_script": {"type": "string", "description": "shell script run inside the environment after creation"},
    "backends": {"type": "array", "items": {"type": "string"}, "description": "preferred backends, in order"},
}


@dataclasses.dataclass
class Config:
    """A loaded configuration file."""

    environments: Dict[str, EnvironmentSpec]
    backend: Optional[str] = None
    protocol: Optional[str] = None
    path: Optional[Path] = None

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
    for name in KNOWN_BACKENDS:
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
            "environments": {"type": "object", "additionalProperties": spec,
                             "propertyNames": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}},
        },
    }


def _key_value(key_node):
    """The Python value YAML makes of a mapping key (``yes`` is True, ``3`` is 3), as in the loaded data."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(key_node, deep=True)
    except (yaml.YAMLError, TypeError):
        return key_node.value


def _entry(mapping, key):
    """The ``(key node, value node)`` of ``key`` in a mapping node, else None."""
    for k, v in mapping.value:
        value = _key_value(k)
        if value == key and type(value) is type(key):  # True == 1, yet ``yes:`` and ``1:`` are different keys
            return k, v
    return None


def _locate(node, path):
    """``(line node, node)`` at a JSON path: the node itself, and the node whose line names it in errors.

    A mapping value is named by its key's line (a block value starts on the next line); a list
    item by its own line.  Where the path leaves the document (keys merged in with ``<<``), the
    deepest node found stands for both.
    """
    line_node = node
    for key in path:
        if isinstance(node, yaml.MappingNode):
            entry = _entry(node, key)
            if entry is None:
                return node, node
            line_node, node = entry
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            line_node = node = node.value[key]
        else:
            return node, node
    return line_node, node


def _line_of_key(mapping, key):
    entry = _entry(mapping, key) if isinstance(mapping, yaml.MappingNode) else None
    return (entry[0] if entry else mapping).start_mark.line + 1


def _check_duplicates(node, where):
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            if k.value in seen:
                raise ConfigError("%s:%d: key %r appears twice" % (where, k.start_mark.line + 1, k.value))
            seen.add(k.value)
            _check_duplicates(v, where)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicates(v, where)


def _describe(error, root, where):
    path = list(error.absolute_path)
    dotted = ".".join(str(p) for p in path) or "(top level)"
    line_node, node = _locate(root, path)
    if error.validator == "additionalProperties":
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        key = extra[0] if extra else "?"
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        prefix = dotted + "." if path else ""
        return "%s:%d: unknown key %r (allowed here: %s)" % (where, _line_of_key(node, key), prefix + str(key), allowed)
    if "propertyNames" in error.relative_schema_path:  # the instance is the offending name, the path its mapping
        return "%s:%d: %s: name %s" % (where, _line_of_key(node, error.instance), dotted, error.message)
    if error.validator == "required":
        return "%s:%d: %s" % (where, node.start_mark.line + 1, error.message)
    return "%s:%d: %s: %s" % (where, line_node.start_mark.line + 1, dotted, error.message)


def parse_config(text: str, where: str, backends, base_dir=None) -> Config:
    """Parse and validate configuration text; ``where`` names it in errors."""
    import jsonschema

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = ":%d" % (mark.line + 1) if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("%s%s: malformed YAML: %s" % (where, line, problem)) from None
    if root is None:
        raise ConfigError("%s: the file is empty; it needs an 'environments:' mapping" % where)
    _check_duplicates(root, where)
    validator = jsonschema.Draft202012Validator(schema(backends))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        best = max(errors, key=lambda e: len(list(e.absolute_path)))
        raise ConfigError(_describe(best, root, where))
    environments = {}
    for name, spec in (data.get("environments") or {}).items():
        line = _locate(root, ["environments", name])[0].start_mark.line + 1
        environments[name] = EnvironmentSpec.from_dict(spec, source="%s:%d" % (where, line), base_dir=base_dir)
    return Config(environments, data.get("backend"), data.get("protocol"))


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
    return parse_config(yaml.safe_dump(data), where, backends, base_dir=os.getcwd())
