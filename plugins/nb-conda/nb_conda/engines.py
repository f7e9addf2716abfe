"""Which engine creates conda prefixes: an installed frontend (micromamba, mamba, conda) or the embedded one.

``NBCORE_CONDA_ENGINE`` chooses: ``auto`` (default), ``embedded``, ``micromamba``,
``mamba``, ``conda``, or the path of one of those executables.  ``auto`` takes the
first of micromamba, mamba, the embedded engine (py-rattler) and, only when none
of those is there, conda: a classic conda solve can take hours where the others
take seconds.  Frontends are found through ``MAMBA_EXE``, ``CONDA_EXE`` and PATH.

Whatever creates the prefix, activation, pip packages, the install script and
lock files work the same way (:mod:`nb_conda.prefix`).
"""
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from nbcore.plugin import ConfigError

from . import embedded, settings

FRONTENDS = ("micromamba", "mamba", "conda")
#: The order ``auto`` tries; classic conda comes last.
AUTO_ORDER = ("micromamba", "mamba", "embedded", "conda")


def frontend_kind(path: str) -> Optional[str]:
    """Which frontend an executable is, by its name (``/opt/mm/bin/micromamba`` -> ``micromamba``)."""
    name = os.path.basename(path).lower()
    for kind in FRONTENDS:  # micromamba before mamba: "micromamba" contains "mamba"
        if name.startswith(kind):
            return kind
    return None


def find_frontends(environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """Every frontend found: ``{kind: path}``; ``MAMBA_EXE`` and ``CONDA_EXE`` before PATH."""
    found = {}
    for variable in ("MAMBA_EXE", "CONDA_EXE"):
        path = environ.get(variable)
        kind = frontend_kind(path) if path else None
        if kind and kind not in found and os.access(path, os.X_OK):
            found[kind] = path
    for kind in FRONTENDS:
        path = shutil.which(kind, path=environ.get("PATH"))
        if path and kind not in found:
            found[kind] = path
    return found


@dataclasses.dataclass(frozen=True)
class Frontend:
    """An installed conda frontend; builds its command lines and runs them with progress."""

    kind: str
    path: str

    @property
    def name(self) -> str:
        return self.kind

    @property
    def description(self) -> str:
        return "%s at %s" % (self.kind, self.path)

    def create_argv(self, prefix: Path, channels: List[str], specs: List[str]) -> List[str]:
        """Create ``prefix`` with ``specs`` solved from exactly ``channels``."""
        argv = [self.path, "create", "--yes", "--prefix", str(prefix), "--override-channels"]
        for channel in channels:
            argv += ["--channel", channel]
        return argv + list(specs)

    def explicit_argv(self, prefix: Path, explicit_file: Path) -> List[str]:
        """Create ``prefix`` from an ``@EXPLICIT`` list of package URLs: no solve."""
        return [self.path, "create", "--yes", "--prefix", str(prefix), "--file", str(explicit_file)]

    def create(self, request: settings.CondaRequest, prefix: Path, progress) -> None:
        if request.lock_file:
            urls = embedded.read_lock(request.lock_file, progress)["conda"]
            with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="nbcore-explicit-") as explicit:
                explicit.write("@EXPLICIT\n" + "".join(url + "\n" for url in urls))
                explicit.flush()
                progress.run(self.explicit_argv(prefix, Path(explicit.name)),
                             step="installing %d packages from the lock file %s with %s (no solve)"
                             % (len(urls), request.lock_file, self.kind))
        else:
            progress.run(self.create_argv(prefix, settings.channel_urls(request), list(request.specs)),
                         step="solving and installing %s with %s" % (", ".join(request.specs), self.kind))


def select_engine(environ: Mapping[str, str] = os.environ):
    """The engine to use (a :class:`Frontend` or the :class:`~nb_conda.embedded.EmbeddedEngine`).

    Raise :class:`ConfigError` when the chosen one is not there, with what to install.
    """
    return choose_engine((environ.get("NBCORE_CONDA_ENGINE") or "auto").strip(), find_frontends(environ),
                         embedded.rattler_installed())


def choose_engine(choice: str, found: Mapping[str, str], embedded_ok: bool):
    """The engine for ``choice`` (``auto``, ``embedded``, a frontend's name or path) among what was found."""
    if choice == "auto":
        for kind in AUTO_ORDER:
            if kind == "embedded" and embedded_ok:
                return embedded.EmbeddedEngine()
            if kind in found:
                return Frontend(kind, found[kind])
        raise ConfigError("no conda engine: pip install py-rattler (the embedded engine, Python >= 3.10), or put "
                          "micromamba, mamba or conda on PATH")
    if choice == "embedded":
        if not embedded_ok:
            raise ConfigError("NBCORE_CONDA_ENGINE=embedded needs py-rattler (Python >= 3.10): pip install py-rattler")
        return embedded.EmbeddedEngine()
    if choice in FRONTENDS:
        if choice not in found:
            raise ConfigError("NBCORE_CONDA_ENGINE=%s, but no %s was found (MAMBA_EXE, CONDA_EXE, PATH)" % (choice, choice))
        return Frontend(choice, found[choice])
    kind = frontend_kind(choice)
    if kind and os.path.isabs(choice) and os.access(choice, os.X_OK):
        return Frontend(kind, choice)
    raise ConfigError("NBCORE_CONDA_ENGINE=%r is not one of auto, embedded, %s, nor the path of an executable one of them"
                      % (choice, ", ".join(FRONTENDS)))
