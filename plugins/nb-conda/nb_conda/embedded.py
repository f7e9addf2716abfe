"""The embedded engine, host side: py-rattler driven in a process of its own (:mod:`nb_conda.rattler_process`)."""
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import List

from nbcore.plugin import InstallError

from . import settings


@functools.lru_cache(maxsize=None)
def rattler_installed() -> bool:
    """Whether py-rattler is importable here; found without importing it or reading package metadata (which
    costs a start about 7 ms)."""
    import importlib.util

    return importlib.util.find_spec("rattler") is not None


@functools.lru_cache(maxsize=None)
def rattler_version():
    """py-rattler's version, or None when it is not installed (looked up once per process)."""
    from importlib import metadata

    try:
        return metadata.version("py-rattler")
    except metadata.PackageNotFoundError:
        return None


def run_engine(op: str, progress, step: str, **request) -> dict:
    """Run one request in the engine's process, streaming its steps and lines; return its result.

    Raise :class:`InstallError` with the engine's one-line message when it fails.
    """
    request["op"] = op
    process = subprocess.Popen([sys.executable, "-m", "nb_conda.rattler_process"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8", errors="replace")
    result = error = None
    try:
        process.stdin.write(json.dumps(request))
        process.stdin.close()
        for raw in process.stdout:
            event = _event(raw)
            if event is None:
                progress.line(raw)
            elif "step" in event:
                progress.step(event["step"])
            elif "line" in event:
                progress.line(event["line"])
            elif "result" in event:
                result = event["result"]
            elif "error" in event:
                error = event["error"]
        code = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    if error:
        raise InstallError(error)
    if code != 0 or result is None:
        lines = progress.tail.lines()
        raise InstallError("%s failed: the conda engine exited with code %s%s"
                           % (step, code, ": " + lines[-1] if lines else ""))
    return result


def _event(raw):
    if not raw.startswith("{"):
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


class EmbeddedEngine:
    """Creates prefixes with py-rattler, in a process of its own: no conda needed, the shared package cache."""

    name = "embedded"

    @property
    def description(self) -> str:
        return "embedded engine (py-rattler %s)" % rattler_version()

    def create(self, request: settings.CondaRequest, prefix: Path, progress) -> None:
        """Solve ``request`` (or read its lock file) and install the packages into ``prefix``."""
        run_engine("create", progress, "creating the conda prefix", prefix=str(prefix),
                   channels=settings.channel_urls(request), specs=list(request.specs),
                   lock_file=str(request.lock_file) if request.lock_file else None,
                   pkgs_dir=str(settings.package_cache()), repodata_dir=str(settings.repodata_cache()),
                   timeout=settings.solve_timeout())


def activation_script(prefix: Path, path: str, progress) -> str:
    """rattler's bash activation script of ``prefix`` for a shell whose PATH is ``path``."""
    return run_engine("activation", progress, "computing the activation", prefix=str(prefix), path=path)["script"]


def write_lock(prefix: Path, request: settings.CondaRequest, pip: List[dict], path: Path, progress) -> int:
    """Write the conda packages of ``prefix`` and the ``pip`` ones (name, version, url, sha256) as a rattler lock
    file, a sha256 for every entry.

    Return how many packages it holds.
    """
    return run_engine("lock", progress, "writing the lock file", prefix=str(prefix), path=str(path),
                      channels=settings.channel_urls(request), pip=pip,
                      pkgs_dir=str(settings.package_cache()))["packages"]


def read_lock(lock_file: Path, progress, conda: bool = True) -> dict:
    """A lock file's packages, every archive on this machine checked against the lock's hash: ``pip`` (name, url
    and sha256 of what pip installs, without resolving) and, with ``conda``, ``conda`` (``URL#md5``, an
    ``@EXPLICIT`` list for conda, mamba and micromamba)."""
    return run_engine("read_lock", progress, "reading the lock file", lock_file=str(lock_file), conda=conda)
