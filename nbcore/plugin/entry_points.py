"""The entry points of the distributions installed on ``sys.path``, read without :mod:`importlib.metadata`.

Importing :mod:`importlib.metadata` (with the ``email``, ``zipfile`` and ``csv`` modules it
brings) costs several times what reading the entry points does, on every start.  Plugin
discovery needs only each distribution's ``entry_points.txt`` and, for a plugin it imports,
the distribution's name and version; this module reads them the way
:func:`importlib.metadata.distributions` finds them: every ``*.dist-info`` and ``*.egg-info``
folder of every folder on ``sys.path``, in that order.  A ``sys.path`` entry that is not a
plain folder (a zip file, an ``.egg``) and an import finder that lists distributions of its
own go through :mod:`importlib.metadata`, which handles them.
"""
import importlib
import os
import sys
from importlib.machinery import PathFinder
from typing import Iterator, Optional

_INFO_SUFFIXES = (".dist-info", ".egg-info")


class EntryPoint:
    """One entry point: ``name = value`` in the section ``group`` of a distribution's ``entry_points.txt``."""

    def __init__(self, name: str, value: str, group: str):
        self.name = name
        self.value = value
        self.group = group

    def load(self):
        """Import the module ``value`` names and return it, or its attribute after ``:``."""
        reference = self.value.split("[", 1)[0]  # extras (``module:attr [extra]``) do not change what loads
        module_name, _, attributes = reference.partition(":")
        value = importlib.import_module(module_name.strip())
        for attribute in filter(None, attributes.strip().split(".")):
            value = getattr(value, attribute)
        return value


class Distribution:
    """An installed distribution's metadata folder; its name and version are read when first asked for."""

    def __init__(self, folder: str):
        self.folder = folder
        self._headers = None

    @property
    def name(self) -> Optional[str]:
        return self._header("Name")

    @property
    def version(self) -> Optional[str]:
        return self._header("Version")

    def _header(self, key):
        if self._headers is None:
            self._headers = {}
            for file_name in ("METADATA", "PKG-INFO"):  # dist-info, egg-info
                text = _read(os.path.join(self.folder, file_name))
                if text is not None:
                    self._headers = _headers(text)
                    break
        return self._headers.get(key.lower())

    def entry_points(self, group: str) -> Iterator[EntryPoint]:
        """The entry points of ``group``, in the file's order."""
        text = _read(os.path.join(self.folder, "entry_points.txt")) or ""
        section = None
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == group and "=" in line:
                name, _, value = line.partition("=")
                yield EntryPoint(name.strip(), value.strip(), group)


class _MetadataDistribution:
    """A distribution :mod:`importlib.metadata` found, with :class:`Distribution`'s interface."""

    def __init__(self, dist):
        self._dist = dist

    @property
    def name(self) -> Optional[str]:
        return self._dist.metadata["Name"]

    @property
    def version(self) -> Optional[str]:
        return self._dist.version

    def entry_points(self, group: str) -> Iterator[EntryPoint]:
        for entry_point in self._dist.entry_points:
            if entry_point.group == group:
                yield EntryPoint(entry_point.name, entry_point.value, group)


def distributions():
    """Every installed distribution, in :func:`importlib.metadata.distributions`'s order."""
    if _other_finders():
        import importlib.metadata

        return [_MetadataDistribution(d) for d in importlib.metadata.distributions()]
    found = []
    for entry in sys.path:
        folder = os.fsdecode(entry) or "."
        if os.path.isdir(folder) and not folder.lower().endswith(".egg"):
            found.extend(_folder_distributions(folder))
        elif os.path.exists(folder):
            import importlib.metadata

            found.extend(_MetadataDistribution(d) for d in importlib.metadata.distributions(path=[entry]))
    return found


def _folder_distributions(folder):
    try:
        children = os.listdir(folder)
    except OSError:
        return []
    return [Distribution(os.path.join(folder, child)) for child in children
            if child.lower().endswith(_INFO_SUFFIXES)]


def _other_finders():
    """Whether an import finder other than the standard path finder lists distributions."""
    return any(hasattr(finder, "find_distributions") for finder in sys.meta_path if finder is not PathFinder)


def _read(path) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _headers(text):
    """The header fields (lower-case keys, first occurrence) of a core-metadata file."""
    headers = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the body (the long description) follows the first blank line
        key, separator, value = line.partition(":")
        if separator and not line[0].isspace():
            headers.setdefault(key.strip().lower(), value.strip())
    return headers
