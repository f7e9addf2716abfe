"""Finding Python interpreters where users keep them: PATH, pyenv, uv, mise and asdf.

Discovery reads folders only: an interpreter's version comes from its install folder's name
(``$PYENV_ROOT/versions/3.10.13``, uv's ``cpython-3.12.1-linux-x86_64-gnu``, mise's and asdf's
``installs/python/3.10.13``), from the ``pyvenv.cfg`` of a virtual environment, or from its
file name (``python3.11``).  Only the interpreter :func:`find_interpreter` picks is run, once,
to check that it works and is the version asked for (and an interpreter whose file name
gives only ``X.Y`` when the request names a patch or a range that the name cannot decide).

A request (a spec's ``python:``) is a version prefix (``3``, ``3.10``, ``3.10.13``) or a range
of PEP 440 specifiers (``>=3.9,<3.11``, ``3.10.*`` is written ``==3.10.*``).
"""
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import ConfigError

#: Where each source keeps its interpreters, in the order they are preferred for the same ``X.Y``.
SOURCES = ("PATH", "pyenv", "uv", "mise", "asdf")
#: The Python minor versions an install hint may name (newest first).
_MINORS = [(3, minor) for minor in range(20, 5, -1)]
_PREFIX = re.compile(r"^\d+(\.\d+){0,2}$")
_FULL_NAME = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_UV_NAME = re.compile(r"^cpython-(\d+)\.(\d+)\.(\d+)-")
_FILE_NAME = re.compile(r"^python(?:(\d+)(?:\.(\d+))?)?$")


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """An interpreter found on this machine: its version (``(3, 11)`` when only the file name told), path and source."""

    version: Tuple[int, ...]
    path: str
    source: str

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    def to_dict(self) -> dict:
        return {"version": self.version_text, "path": self.path, "source": self.source}


class PythonRequest:
    """A spec's ``python:``: a version prefix (``3.10``, ``3.10.13``) or a range (``>=3.9,<3.11``)."""

    def __init__(self, text: str):
        self.text = str(text).strip()
        if _PREFIX.match(self.text):
            self.prefix = tuple(int(p) for p in self.text.split("."))
            self.specifier = None
        else:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            self.prefix = None
            try:
                self.specifier = SpecifierSet(self.text)
            except InvalidSpecifier:
                raise ConfigError("python: %r is neither a version (\"3.10\", \"3.10.13\") nor a range "
                                  "(\">=3.9,<3.11\")" % self.text) from None

    def matches(self, version: Tuple[int, ...]) -> Optional[bool]:
        """Whether ``version`` satisfies the request; None when a version known only as ``X.Y`` cannot tell."""
        version = tuple(version)
        if self.prefix is not None:
            if len(version) >= len(self.prefix):
                return version[:len(self.prefix)] == self.prefix
            return None if version == self.prefix[:len(version)] else False
        if len(version) >= 3:
            return self.specifier.contains(".".join(map(str, version[:3])), prereleases=True)
        outcomes = {self.specifier.contains("%d.%d.%d" % (version[0], version[1], patch), prereleases=True)
                    for patch in range(40)}
        return outcomes.pop() if len(outcomes) == 1 else None

    def install_target(self) -> str:
        """The version to name in an install command: the request itself, or the newest ``X.Y`` a range allows."""
        if self.prefix is not None:
            return self.text
        for minor in _MINORS:
            if self.matches(minor) is not False:
                return "%d.%d" % minor
        return self.text


def python_matches(wanted: Optional[str], version: Tuple[int, ...]) -> bool:
    """Whether an interpreter of ``version`` (a full ``sys.version_info``) satisfies a spec's ``python``."""
    return not wanted or bool(PythonRequest(wanted).matches(tuple(version)[:3]))


def python_range_refused(provider, wanted: Optional[str]) -> Optional[str]:
    """Why ``provider`` cannot take ``wanted`` when it is a range and the backend takes versions only, else None."""
    if not wanted or _PREFIX.match(str(wanted).strip()) or provider.accepts_python_ranges:
        return None
    return ('the %s backend takes a Python version ("3.10", "3.10.13"), not a range like "%s"'
            % (provider.name, wanted))


def _executable(path: Path) -> bool:
    """An executable file that is not a script (pyenv's, mise's and asdf's shims are shell scripts)."""
    try:
        if not (path.is_file() and os.access(str(path), os.X_OK)):
            return False
        with open(str(path), "rb") as handle:
            return handle.read(2) != b"#!"
    except OSError:
        return False


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def tool_roots() -> dict:
    """The folder each version manager keeps its Pythons in (whether it exists or not)."""
    return {
        "pyenv": Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions",
        "uv": Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or _data_home() / "uv" / "python"),
        "mise": Path(os.environ.get("MISE_DATA_DIR") or _data_home() / "mise") / "installs" / "python",
        "asdf": Path(os.environ.get("ASDF_DATA_DIR") or Path.home() / ".asdf") / "installs" / "python",
    }


def _installed(source: str, root: Path) -> List[Interpreter]:
    """The CPython installs of one version manager, read from its folder names."""
    pattern = _UV_NAME if source == "uv" else _FULL_NAME
    found = []
    try:
        names = os.listdir(str(root))
    except OSError:
        return found
    for name in names:
        match = pattern.match(name)
        if not match:
            continue
        for executable in ("python3", "python"):
            candidate = root / name / "bin" / executable
            if _executable(candidate):
                found.append(Interpreter(tuple(int(g) for g in match.groups()), str(candidate), source))
                break
    return sorted(found, key=lambda i: i.version)


def _version_from_layout(path: Path, roots: dict) -> Optional[Tuple[int, ...]]:
    """The version an interpreter's real location or its virtual environment's ``pyvenv.cfg`` states."""
    real = Path(os.path.realpath(str(path)))
    for source, root in roots.items():
        try:
            relative = real.relative_to(os.path.realpath(str(root)))
        except ValueError:
            continue
        match = (_UV_NAME if source == "uv" else _FULL_NAME).match(relative.parts[0]) if relative.parts else None
        if match:
            return tuple(int(g) for g in match.groups())
    config = path.parent.parent / "pyvenv.cfg"
    try:
        text = config.read_text()
    except OSError:
        text = ""
    match = re.search(r"^version(?:_info)?\s*=\s*(\d+)\.(\d+)\.(\d+)", text, re.MULTILINE)
    if match:
        return tuple(int(g) for g in match.groups())
    for name in (real.name, path.name):
        match = _FILE_NAME.match(name)
        if match and match.group(2):
            return int(match.group(1)), int(match.group(2))
    return None


def _on_path(roots: dict) -> List[Interpreter]:
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder:
            continue
        try:
            names = sorted(os.listdir(folder), key=lambda n: (n.count("."), n), reverse=True)
        except OSError:
            continue
        for name in names:
            if not _FILE_NAME.match(name):
                continue
            candidate = Path(folder) / name
            if not _executable(candidate):
                continue
            version = _version_from_layout(candidate, roots)
            if version:
                found.append(Interpreter(version, str(candidate), "PATH"))
    return found


def discover() -> List[Interpreter]:
    """Every interpreter found, each real one once (under the first source that has it), in :data:`SOURCES` order."""
    roots = tool_roots()
    candidates = _on_path(roots)
    for source in SOURCES[1:]:
        candidates += _installed(source, roots[source])
    seen, found = set(), []
    for interpreter in candidates:
        real = os.path.realpath(interpreter.path)
        if real not in seen:
            seen.add(real)
            found.append(interpreter)
    return found


def run_version(executable: str) -> Optional[Tuple[int, int, int]]:
    """The version an interpreter reports when run, None when it does not run."""
    try:
        out = subprocess.run([executable, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not re.match(r"^\d+\.\d+\.\d+$", out.stdout.strip()):
        return None
    return tuple(int(p) for p in out.stdout.strip().split("."))


def find_interpreter(wanted: Optional[str], found: Optional[List[Interpreter]] = None) -> Optional[str]:
    """The path of a working interpreter for the request ``wanted`` (None: the host's), or None.

    The host's own interpreter wins when it matches; then the newest ``X.Y`` that matches, among
    equals the first source of :data:`SOURCES`.  The choice is run once to check it.
    """
    if not wanted or python_matches(wanted, sys.version_info):
        return sys.executable
    request = PythonRequest(wanted)
    candidates = [i for i in (discover() if found is None else found) if request.matches(i.version) is not False]
    candidates.sort(key=lambda i: tuple(i.version[:2]), reverse=True)  # stable: source order among equals
    for interpreter in candidates:
        version = run_version(interpreter.path)
        if version and request.matches(version):
            return interpreter.path
    return None


def version_managers() -> dict:
    """The version managers installed here that can install a Python (pyenv, uv, mise, asdf), each with the
    command that runs it (its name when it is on PATH, else pyenv's own path)."""
    found = {tool: tool for tool in ("pyenv", "uv", "mise", "asdf") if shutil.which(tool)}
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "bin" / "pyenv"
    if "pyenv" not in found and os.access(str(pyenv), os.X_OK):
        found["pyenv"] = str(pyenv)
    return {tool: found[tool] for tool in ("pyenv", "uv", "mise", "asdf") if tool in found}


def _install_commands(target: str, managers: dict) -> List[str]:
    commands = {"pyenv": "%s install %s", "uv": "%s python install %s", "mise": "%s install python@%s",
                "asdf": "%s install python latest:%s"}
    return ["`%s`" % (commands[tool] % (command, target)) for tool, command in managers.items()]


def describe_found(found: List[Interpreter]) -> str:
    """``PATH 3.11.7; pyenv 3.9.18, 3.12.1`` (``none`` when nothing was found)."""
    parts = []
    for source in SOURCES:
        versions = sorted({i.version for i in found if i.source == source})
        if versions:
            parts.append("%s %s" % (source, ", ".join(".".join(map(str, v)) for v in versions)))
    return "; ".join(parts) or "none"


def not_found_message(wanted: str, found: Optional[List[Interpreter]] = None,
                      managers: Optional[dict] = None) -> str:
    """One line: no Python matches ``wanted``, what was found (and where), and how to install one here."""
    found = discover() if found is None else found
    managers = version_managers() if managers is None else managers
    target = PythonRequest(wanted).install_target()
    commands = _install_commands(target, managers)
    if commands:
        how = "install it with " + " or ".join(commands)
    else:
        how = "install Python %s on PATH, or `pip install uv` then `uv python install %s`" % (target, target)
    return "no Python %s found (found: %s); %s" % (wanted, describe_found(found), how)
