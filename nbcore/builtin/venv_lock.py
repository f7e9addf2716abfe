"""Lock files of venv environments: every installed distribution pinned, with the sha256 of its files.

The format is pip's requirements file in hash-checking mode (``name==version \\ --hash=sha256:...``),
which ``pip install --require-hashes --no-deps -r LOCK`` and ``uv pip install --require-hashes
--no-deps -r LOCK`` install exactly, refusing any file whose hash is not listed.  The versions are
what the environment holds (``pip freeze --all``, or ``uv pip freeze``); the hashes come from
``uv pip compile --generate-hashes --no-deps`` when the environment was built with uv (every file
the index has for that version, so the lock installs on other platforms too), else from the files
``pip download --no-deps`` fetches for this interpreter.  Distributions installed from a folder
(``pip install -e .`` in an ``install_script``) are not locked: the script installs them again.
"""
import hashlib
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import ConfigError, InstallError

#: The first line of every venv lock file; the second names the Python it was written with.
HEADER = "# nbcore lock file (venv backend): install it with `venv: {lock_file: FILE}`"
_PYTHON_LINE = re.compile(r"^# python: (\d+)\.(\d+)\.(\d+)$", re.MULTILINE)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file(spec) -> Optional[Path]:
    """The spec's ``venv.lock_file`` (relative to the config file's folder), None without one."""
    value = spec.section("venv").get("lock_file")
    if value is None:
        return None
    path = (Path(spec.base_dir or os.getcwd()) / os.path.expanduser(value)).resolve()
    if not path.is_file():
        raise ConfigError("venv.lock_file: %s does not exist%s (write it with `nbcore lock ENV -o FILE`)"
                          % (path, " (" + spec.source + ")" if spec.source else ""))
    return path


def locked_python(path: Path) -> Optional[str]:
    """The ``X.Y`` of the Python the lock file was written with (its second line), None when it does not say."""
    try:
        match = _PYTHON_LINE.search(path.read_text())
    except OSError:
        return None
    return "%s.%s" % match.groups()[:2] if match else None


def pins(frozen: str) -> Tuple[List[str], List[str]]:
    """``(name==version pins, lines that are not pins)`` of a freeze output; the others are editable or
    folder installs, which a lock cannot hold."""
    locked, skipped = [], []
    for line in frozen.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        (locked if _PIN.match(line) else skipped).append(line)
    return locked, skipped


def hashes_of_downloads(folder: Path, pinned: List[str]) -> List[str]:
    """Requirement lines with the sha256 of the file ``pip download`` fetched for each pin."""
    files = {}
    for entry in sorted(folder.iterdir()):
        stem = entry.name[:-len(".whl")].split("-")[0] if entry.name.endswith(".whl") else \
            re.sub(r"\.(tar\.gz|zip|tar\.bz2)$", "", entry.name).rsplit("-", 1)[0]
        files[normalized(stem)] = hashlib.sha256(entry.read_bytes()).hexdigest()
    lines = []
    for pin in pinned:
        name = _PIN.match(pin).group(1)
        digest = files.get(normalized(name))
        if digest is None:
            raise InstallError("writing the lock file: pip downloaded no file for %s" % pin)
        lines.append("%s \\\n    --hash=sha256:%s" % (pin, digest))
    return lines


def write_lock(python: str, uv: Optional[str], path: Path, run_output, progress) -> int:
    """Write the lock file of the environment whose interpreter is ``python``; return how many distributions.

    ``run_output(argv, step)`` runs a command and returns its standard output (raising InstallError).
    """
    if uv:
        frozen = run_output([uv, "pip", "freeze", "--python", python], "listing the installed packages")
    else:
        frozen = run_output([python, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"],
                            "listing the installed packages")
    import tempfile

    pinned, skipped = pins(frozen)
    if skipped:
        progress.step("not locked (installed from a folder or URL; install_script installs it again): "
                      + ", ".join(skipped))
    version = run_output([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                         "reading the Python version").strip()
    with tempfile.TemporaryDirectory(prefix="nbcore-lock-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("".join(p + "\n" for p in pinned))
        if not pinned:
            body = ""
        elif uv:
            body = run_output([uv, "pip", "compile", "--quiet", "--generate-hashes", "--no-deps", "--no-header",
                               "--no-annotate", "--python", python, str(requirements)],
                              "hashing %d packages with uv" % len(pinned))
        else:
            downloads = Path(scratch) / "files"
            run_output([python, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                        "--dest", str(downloads), "-r", str(requirements)],
                       "hashing %d packages with pip" % len(pinned))
            body = "\n".join(hashes_of_downloads(downloads, pinned)) + "\n"
    text = "%s\n# python: %s\n%s" % (HEADER, version, body)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(str(tmp), str(path))
    return len(pinned)


def install_argv(python: str, uv: Optional[str], lock: Path) -> List[str]:
    """The command that installs exactly the lock file's distributions, checking every file's hash."""
    if uv:
        return [uv, "pip", "install", "--python", python, "--require-hashes", "--no-deps", "-r", str(lock)]
    return [python, "-m", "pip", "install", "--disable-pip-version-check", "--require-hashes", "--no-deps",
            "-r", str(lock)]


def hash_mismatch(lines: List[str]) -> Optional[str]:
    """The distribution whose file did not match its hash, read from pip's or uv's output; None when none."""
    for index, line in enumerate(lines):
        match = re.search(r"[Hh]ash mismatch for `([^`]+)`", line)
        if match:
            return match.group(1)
        if "DO NOT MATCH THE HASHES" in line:
            for following in lines[index + 1:]:
                match = re.match(r"^\s+(\S+==\S+) from ", following)
                if match:
                    return match.group(1)
            return "a package"
    return None
