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
cache is this user's alone: the folder ``0700`` and its entries ``0600``
whatever the umask, and an entry or folder another user owns or could have
written is ignored with a warning and rebuilt.
"""
import hashlib
import json
import logging
import os
import shutil
import tempfile

from .. import __version__
from ..home import PRIVATE_FILE, PRIVATE_FOLDER, nbcore_home, untrusted, untrusted_path, write_file

log = logging.getLogger("nbcore")

#: Entries kept; when there are more, the least recently written go.
MAX_ENTRIES = 64


def cache_key(text: str) -> str:
    """The key of the configuration ``text`` (with nbcore's version, whose own schema it was checked against)."""
    material = "\0".join((__version__, text))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _folder():
    return nbcore_home() / "config-cache"


def load(key):
    """The value stored under ``key``, or None (a miss: also for an entry another user could have written)."""
    folder = _folder()
    path = folder / (key + ".json")
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        folder_problem = untrusted_path(folder)
        problem = folder_problem or untrusted(os.fstat(fd))
        if problem:
            log.warning("ignored the cached configuration %s: %s; it is checked again and the cache rebuilt",
                        folder if folder_problem else path, problem)
            return None
        try:
            return json.load(f)
        except (OSError, ValueError):
            return None


def store(key, value):
    """Remember ``value`` (JSON data that must read back equal) under ``key``; silently skipped when impossible."""
    try:
        text = json.dumps(value, allow_nan=False)
        if json.loads(text) != value:  # YAML types JSON does not keep (dates, non-string keys)
            return
    except (TypeError, ValueError):
        return
    folder = _folder()
    try:
        _private_folder(folder)
        write_file(folder / (key + ".json"), text, PRIVATE_FILE)
        _prune(folder)
    except OSError:
        pass


def _private_folder(folder):
    """Make ``folder`` exist as this user's alone; one another user could write into is moved aside and removed."""
    if untrusted_path(folder):
        aside = tempfile.mkdtemp(prefix=".untrusted-", dir=str(folder.parent))
        os.rename(str(folder), os.path.join(aside, folder.name))
        shutil.rmtree(aside, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(str(folder), PRIVATE_FOLDER)
    except FileExistsError:
        return
    os.chmod(str(folder), PRIVATE_FOLDER)


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
