"""Configuration files already validated, remembered by content, so that a start skips YAML and JSON Schema.

Parsing a file with PyYAML and validating it with jsonschema costs more than
the rest of a CLI start (importing jsonschema alone is about a third of it).
The outcome depends only on the file's text and the schema in force (nbcore's
and the installed plugins'), so a valid file's parsed data is kept under
``NBCORE_HOME/config-cache/`` keyed by a hash of both; any change to either
is a miss and goes through the full check again, with the same messages.
Invalid files are never remembered.  A cache that cannot be read or written
(read-only home, a damaged entry) is a miss, never an error.
"""
import hashlib
import json
import os
import tempfile

from .. import __version__
from ..home import nbcore_home

#: Entries kept; when there are more, the least recently written go.
MAX_ENTRIES = 64


def cache_key(text: str, schema: dict):
    """The key of ``text`` validated against ``schema``, or None when the schema is not plain JSON data."""
    try:
        schema_text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):
        return None
    material = "\0".join((__version__, schema_text, text))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _folder():
    return nbcore_home() / "config-cache"


def load(key):
    """The value stored under ``key``, or None."""
    if key is None:
        return None
    try:
        with open(str(_folder() / (key + ".json")), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def store(key, value):
    """Remember ``value`` (JSON data that must read back equal) under ``key``; silently skipped when impossible."""
    if key is None:
        return
    try:
        text = json.dumps(value, allow_nan=False)
        if json.loads(text) != value:  # YAML types JSON does not keep (dates, non-string keys)
            return
    except (TypeError, ValueError):
        return
    folder = _folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=str(folder))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, str(folder / (key + ".json")))
        except BaseException:
            os.unlink(tmp)
            raise
        _prune(folder)
    except OSError:
        pass


def _prune(folder):
    entries = []
    for path in folder.glob("*.json"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:
            pass
    for _, path in sorted(entries)[:-MAX_ENTRIES]:
        try:
            path.unlink()
        except OSError:
            pass
