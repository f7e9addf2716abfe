"""The environment store: one folder per (backend, spec hash), built once, marked ready last.

Layout under ``NBCORE_HOME``::

    envs/<backend>/<name>-<hash>/            what the backend built
    envs/<backend>/<name>-<hash>/nbcore-env.json   written last: the ready marker
    envs/<backend>/<name>-<hash>.lock        cross-process install lock

The lock is an ``flock`` (the ``filelock`` package): the kernel drops it when
its holder dies, so a killed installer never leaves a stale lock; the next
installer finds a folder without a ready marker, removes it and starts over.
"""
import json
import os
import shutil
import time
from pathlib import Path
from typing import List

from ..plugin.backend import Environment
from ..errors import InstallError
from ..spec import EnvironmentSpec

READY_MARKER = "nbcore-env.json"


def env_folder(home: Path, backend: str, name: str, spec_hash: str) -> Path:
    return home / "envs" / backend / ("%s-%s" % (name, spec_hash[:12]))


def make_environment(home: Path, provider, name: str, spec: EnvironmentSpec) -> Environment:
    """The environment ``provider`` (a backend) makes of ``spec``, named by its hash."""
    spec_hash = spec.identity(provider.name, provider.identity(spec))
    return Environment(name, spec, provider.name, spec_hash, env_folder(home, provider.name, name, spec_hash))


def is_ready(env: Environment) -> bool:
    return (env.path / READY_MARKER).is_file()


def _lock_timeout():
    return float(os.environ.get("NBCORE_INSTALL_TIMEOUT", "7200"))


def ensure_installed(provider, env: Environment, progress, force=False) -> bool:
    """Install ``env`` unless it is ready; return True when this call built it.

    Safe to call from many processes at once: one builds, the others wait.
    """
    if not force and is_ready(env) and provider.is_installed(env):
        return False
    import filelock

    env.path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(env.path) + ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        progress.step("another process is installing %s (%s); waiting for it" % (env.name, env.backend))
        try:
            lock.acquire(timeout=_lock_timeout())
        except filelock.Timeout:
            raise InstallError("gave up waiting for the install of %s after %.0f s (NBCORE_INSTALL_TIMEOUT)"
                               % (env.name, _lock_timeout())) from None
    try:
        if not force and is_ready(env) and provider.is_installed(env):
            return False
        if env.path.exists():
            progress.step("removing the unfinished environment at %s" % env.path)
            provider.remove(env)
            shutil.rmtree(env.path, ignore_errors=True)
        env.path.mkdir(parents=True)
        progress.step("installing environment %s with the %s backend into %s" % (env.name, env.backend, env.path))
        started = time.monotonic()
        try:
            provider.install(env, progress)
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise
        write_record(env)
        progress.step("environment %s is ready (%.1f s)" % (env.name, time.monotonic() - started))
        return True
    finally:
        lock.release()


def write_record(env: Environment) -> None:
    record = {"name": env.name, "backend": env.backend, "hash": env.spec_hash,
              "spec": env.spec.to_dict(), "source": env.spec.source, "created": time.time()}
    tmp = env.path / (READY_MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, env.path / READY_MARKER)


def list_environments(home: Path) -> List[dict]:
    """Every environment folder under ``home`` with its record (``ready`` False when unfinished)."""
    out = []
    root = home / "envs"
    if not root.is_dir():
        return out
    for backend_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in backend_dir.iterdir() if p.is_dir()):
            marker = folder / READY_MARKER
            record = {"name": folder.name.rsplit("-", 1)[0], "backend": backend_dir.name, "hash": None,
                      "spec": {}, "source": None}
            if marker.is_file():
                record.update(json.loads(marker.read_text()))
            record.update(path=str(folder), ready=marker.is_file(), bytes=folder_bytes(folder))
            out.append(record)
    return out


def environment_from_record(record: dict) -> Environment:
    spec = EnvironmentSpec.from_dict(record.get("spec") or {}, source=record.get("source") or "")
    return Environment(record["name"], spec, record["backend"], record.get("hash") or "", Path(record["path"]))


def folder_bytes(folder: Path) -> int:
    """The size of every file under ``folder`` (0 when it does not exist)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for f in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
