"""Configuration files already validated, remembered by content, so that a start skips YAML and JSON Schema.

Parsing a file with PyYAML and validating it with jsonschema costs more than
the rest of a CLI start (importing jsonschema alone is about a third of it).
The outcome depends only on the file's text and the schema in force (nbcore's
and that of each backend section the file uses), so a valid file's parsed data
is kept under ``NBCORE_HOME/config-cache/`` keyed by a hash of the text (and
nbcore's version), with the schemas of the sections it uses; any change to the
text or to one of those schemas is a miss and goes through the full check again,
with the same messages.
Invalid files are never remembered.  A cache that cannot be read or written
(read-only home, a damaged entry) is a miss, never an error.

A validated config is trusted as it is (its ``install_script`` runs), so the
cache is this user's alone (:mod:`nbcore.private_cache`).
"""
import hashlib

from .. import __version__
from ..private_cache import PrivateCache


def cache_key(text: str) -> str:
    """The key of the configuration ``text`` (with nbcore's version, whose own schema it was checked against)."""
    material = "\0".join((__version__, text))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]


#: The 64 configurations written last (``CACHE.load(key)``, ``CACHE.store(key, value)``).
CACHE = PrivateCache("config-cache", 64, "cached configuration", "it is checked again")
