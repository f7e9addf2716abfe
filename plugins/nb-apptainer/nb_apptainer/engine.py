"""Finding Apptainer (or SingularityCE) and letting spython drive it.

spython runs the executable named ``singularity`` from ``PATH``.  Hosts with only
``apptainer`` (or with a ``singularity`` that is another installation) get a
folder holding a ``singularity`` link to the engine nbcore found, put first on
``PATH`` while spython runs (:func:`spython_path`).

What the engine's ``--version`` says is remembered between starts (asking it,
spython included, costs an open about 25 ms) until the executable's file
changes: its size, times or inode.
"""
import contextlib
import dataclasses
import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from nbcore.plugin import BackendUnavailable, PrivateCache, nbcore_home

#: Executable names tried in order.
EXECUTABLES = ("apptainer", "singularity")
#: ``--version`` of each engine executable, with the stamp of its file.
VERSIONS = PrivateCache("apptainer-engine", 8, "cached Apptainer version", "the engine is asked again")
INSTALL_HINT = ("install Apptainer (https://apptainer.org/docs/admin/main/installation.html) or SingularityCE, "
                "or load its module (module load apptainer)")


@dataclasses.dataclass(frozen=True)
class Engine:
    """The container engine found on ``PATH``."""

    executable: str
    #: ``apptainer`` or ``singularity`` (SingularityCE), from its ``--version``.
    flavour: str
    version: str

    @property
    def env_prefix(self) -> str:
        """The prefix of host variables the engine passes into a ``--cleanenv`` container."""
        return "APPTAINERENV_" if self.flavour == "apptainer" else "SINGULARITYENV_"


def find_executable() -> Optional[str]:
    """The path of ``apptainer``, else ``singularity``, on ``PATH`` (None when neither is there)."""
    return next((path for path in map(shutil.which, EXECUTABLES) if path), None)


@contextlib.contextmanager
def spython_path(executable: str):
    """Make spython's ``singularity`` be ``executable`` while the block runs."""
    current = shutil.which("singularity")
    if current and os.path.realpath(current) == os.path.realpath(executable):
        yield
        return
    folder = _link_folder(executable)
    previous = os.environ.get("PATH")
    os.environ["PATH"] = str(folder) + os.pathsep + (previous or "")
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = previous


def _link_folder(executable: str) -> Path:
    """A folder (in nbcore's cache) whose ``singularity`` links to ``executable``."""
    real = os.path.realpath(executable)
    folder = nbcore_home() / "cache" / "apptainer" / "spython-bin" / _slug(real)
    link = folder / "singularity"
    if not (link.is_symlink() and os.readlink(link) == real):
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".link-")
        os.close(fd)
        os.unlink(temporary)
        os.symlink(real, temporary)
        os.replace(temporary, link)
    return folder


def _slug(path: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in path).strip("-")


@functools.lru_cache(maxsize=None)
def _probe(executable: str):
    """``(Engine, None)`` when ``executable --version`` works (asked through spython), else ``(None, reason)``."""
    real = os.path.realpath(executable)
    try:
        st = os.stat(real)
        stamp = [real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    except OSError:
        stamp = None
    key = hashlib.sha256(real.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    known = VERSIONS.load(key) if stamp else None
    remembered = isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("version"), str)
    version = known["version"] if remembered else _ask_version(executable)
    words = str(version or "").split()
    if len(words) < 3 or words[1] != "version":
        return None, "%s does not run (%s --version said %r); check the installation" % (
            executable, os.path.basename(executable), str(version or "nothing")[:200])
    if stamp and not remembered:
        VERSIONS.store(key, {"stamp": stamp, "version": version})
    flavour = "apptainer" if words[0] == "apptainer" else "singularity"
    return Engine(executable, flavour, words[2]), None


def _ask_version(executable: str):
    """What ``executable --version`` prints, asked through spython."""
    from spython.utils import get_singularity_version

    with spython_path(executable):
        return get_singularity_version()


def unavailable_reason() -> Optional[str]:
    """None when Apptainer or SingularityCE runs here, else a one-line reason with a fix."""
    executable = find_executable()
    if executable is None:
        return "neither apptainer nor singularity is on PATH; " + INSTALL_HINT
    return _probe(executable)[1]


def require_engine() -> Engine:
    """The engine, or :class:`BackendUnavailable` saying why there is none."""
    executable = find_executable()
    if executable is None:
        raise BackendUnavailable("the apptainer backend needs Apptainer: " + unavailable_reason())
    engine, reason = _probe(executable)
    if engine is None:
        raise BackendUnavailable("the apptainer backend cannot run: " + reason)
    return engine
