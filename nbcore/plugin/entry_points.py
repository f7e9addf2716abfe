"""The entry points of the group ``nbcore``, read with :mod:`importlib.metadata` and remembered between starts.

Reading them means importing :mod:`importlib.metadata` (about 6 ms, with the
email parser it brings) and walking every installed distribution, at every
start.  What was found is kept in ``NBCORE_HOME/plugin-cache/`` (this user's
alone, :mod:`nbcore.private_cache`) with the modification time of every entry
of ``sys.path``, and used again while none of them changed.  That is the signal
Python's own import system relies on to notice new modules: installing,
upgrading or removing a distribution adds or removes its ``.dist-info`` folder,
which changes the folder it lies in.  Editing an installed ``entry_points.txt``
in place is not such a change; reinstalling the distribution is.  A folder on
``sys.path`` that changes at every run (a script's folder it writes into) makes
every start read them again, which costs what it did before.
"""
import hashlib
import importlib
import os
import sys
from typing import List, NamedTuple, Optional

from .. import __version__
from ..private_cache import PrivateCache

GROUP = "nbcore"

#: One entry per ``sys.path`` seen last (scripts in different folders have different ones).
CACHE = PrivateCache("plugin-cache", 16, "cached list of plugins", "the plugins are looked up again")


class EntryPoint(NamedTuple):
    """An entry point of the group ``nbcore``: the plugin's name, its module (``module`` or ``module:attribute``)
    and the distribution that declares it."""

    name: str
    value: str
    distribution: Optional[str]
    version: Optional[str]

    def load(self):
        """Import the module and return it (or the attribute the value names), as ``EntryPoint.load`` does."""
        module, _, attributes = self.value.partition(":")
        found = importlib.import_module(module.strip())
        for attribute in attributes.partition("[")[0].strip().split("."):  # "[extras]": deprecated, ignored
            if attribute:
                found = getattr(found, attribute)
        return found


def entry_points() -> List[EntryPoint]:
    """Every entry point of the group ``nbcore``, each name once (the first distribution on ``sys.path`` wins)."""
    key = hashlib.sha256("\0".join([__version__, sys.executable] + sys.path).encode("utf-8", "surrogatepass"))
    key = key.hexdigest()[:32]
    stamps = _stamps()
    cached = CACHE.load(key)
    if isinstance(cached, dict) and cached.get("stamps") == stamps:
        try:
            return [EntryPoint(*fields) for fields in cached["entry_points"]]
        except (KeyError, TypeError):
            pass
    found = _read()
    CACHE.store(key, {"stamps": stamps, "entry_points": [list(entry_point) for entry_point in found]})
    return found


def _stamps():
    """The modification time of each ``sys.path`` entry (None: missing), as JSON data."""
    stamps = []
    for path in sys.path:
        try:
            stamps.append([path, os.stat(path or ".").st_mtime_ns])
        except OSError:
            stamps.append([path, None])
    return stamps


def _read() -> List[EntryPoint]:
    import importlib.metadata

    seen, found = set(), []
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group == GROUP and entry_point.name not in seen:
                seen.add(entry_point.name)
                found.append(EntryPoint(entry_point.name, entry_point.value, dist.metadata["Name"], dist.version))
    return found
