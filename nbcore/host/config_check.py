"""Parsing and validating a configuration text: PyYAML, JSON Schema, and the file's lines for errors.

Imported only when :mod:`.config_cache` does not know the text (both libraries
take a while to import).  Errors name the file, the line and the key.
"""
import difflib

import jsonschema
import yaml

from ..errors import ConfigError


def check(text, where, file_schema):
    """``{"data": the loaded file, "lines": {environment: line of its name}}``, or a ConfigError."""
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
    _check_python_numbers(root, data, where)
    validator = jsonschema.Draft202012Validator(file_schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        # the deepest error; at one depth, an unknown key before a missing one (``environment:`` for ``environments:``)
        best = max(errors, key=lambda e: (len(list(e.absolute_path)), e.validator == "additionalProperties"))
        raise ConfigError(_describe(best, root, where))
    lines = {name: _locate(root, ["environments", name])[0].start_mark.line + 1
             for name in data.get("environments") or {}}
    return {"data": data, "lines": lines}


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


def _check_python_numbers(root, data, where):
    """An unquoted ``python: 3.10`` is the number 3.1 to YAML: an error asking to quote it."""
    environments = data.get("environments") if isinstance(data, dict) else None
    if not isinstance(environments, dict):
        return
    for name, spec in environments.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("python"), (int, float)):
            continue
        line_node, node = _locate(root, ["environments", name, "python"])
        if isinstance(node, yaml.ScalarNode) and node.value != str(spec["python"]):
            raise ConfigError('%s:%d: environments.%s.python: %s is read by YAML as the number %s; quote it: '
                              'python: "%s"' % (where, line_node.start_mark.line + 1, name, node.value,
                                                spec["python"], node.value))


def _describe(error, root, where):
    path = list(error.absolute_path)
    dotted = ".".join(str(p) for p in path) or "(top level)"
    line_node, node = _locate(root, path)
    if path and path[-1] == "python" and error.validator == "pattern":
        return ('%s:%d: %s: %r is neither a Python version ("3.10", "3.10.13") nor a range (">=3.9,<3.11")'
                % (where, line_node.start_mark.line + 1, dotted, error.instance))
    if error.validator == "additionalProperties":
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        key = extra[0] if extra else "?"
        known = sorted(error.schema.get("properties", {}))
        prefix = dotted + "." if path else ""
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = "did you mean %r? " % (prefix + close[0]) if close else ""
        return "%s:%d: unknown key %r (%sallowed here: %s)" % (where, _line_of_key(node, key), prefix + str(key), hint,
                                                              ", ".join(known))
    if error.validator == "pattern" and error.schema.get("description"):  # say what is expected, not the regex
        return "%s:%d: %s: %r is not valid here (expected %s)" % (where, line_node.start_mark.line + 1, dotted,
                                                                  error.instance, error.schema["description"])
    if "propertyNames" in error.relative_schema_path:  # the instance is the offending name, the path its mapping
        return "%s:%d: %s: name %s" % (where, _line_of_key(node, error.instance), dotted, error.message)
    if error.validator == "required":
        return "%s:%d: %s" % (where, node.start_mark.line + 1, error.message)
    return "%s:%d: %s: %s" % (where, line_node.start_mark.line + 1, dotted, error.message)
