"""The environment store: one folder per (backend, spec hash), built once, marked ready last.

Layout under ``NBCORE_HOME``::

    envs/<backend>/<name>-<hash>/            what the backend built
    envs/<backend>/<name>-<hash>/nbcore-env.json   written last: the ready marker
    envs/<backend>/<name>-<hash>.lock        cross-process install lock

The lock is an ``flock`` (the ``filelock`` package): the kernel drops it when
its holder dies, so a killed installer never leaves a stale lock; the next
installer finds a folder without a ready marker, removes it and starts over.
Lock files are never deleted: a process waiting on a deleted file would hold a
lock nobody else sees, and two installs could run at once.

The ready marker records the projects (config files' folders) that use the
environment: the one it was built for, and every other one that opened it since
(identical specs share a build); its modification time is the last time it was opened.

An open environment holds a *shared* lock on the same file (:class:`InUse`)
while its worker runs, so removing it (``nbcore gc``, an older build replaced by
a new one) and rebuilding it wait for, or skip, environments in use.
Once a new build of an environment is ready, the older builds of the same name,
backend and project are removed (:func:`remove_superseded`).

Environment folders are ``0755`` and ready markers ``0644`` whatever the umask
(readable by others, e.g. the user a container runs as; writable by this user
alone).  A folder or marker another user owns or could write into is not ready:
it is ignored with a warning and rebuilt.
"""
import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from ..log import log
from .backend import Environment
from .process import end_install_steps, installing
from ..errors import InstallError
from ..home import SHARED_FILE, SHARED_FOLDER, make_folder, untrusted_path, write_file, writing_into
from ..settings import install_timeout
from ..spec import EnvironmentSpec


READY_MARKER = "nbcore-env.json"
#: The fields of a ready marker nbcore reads, with the types they may have; any other makes the marker damaged.
MARKER_FIELDS = {"name": (str,), "backend": (str,), "hash": (str,), "spec": (dict,), "source": (str, type(None)),
                 "project": (str, type(None)), "projects": (list,), "created": (int, float)}


def env_folder(home: Path, backend: str, name: str, spec_hash: str) -> Path:
    return home / "envs" / backend / ("%s-%s" % (name, spec_hash[:12]))


def make_environment(home: Path, provider, name: str, spec: EnvironmentSpec) -> Environment:
    """The environment ``provider`` (a backend) makes of ``spec``, named by its hash."""
    spec_hash = spec.identity(provider.name, provider.identity(spec))
    return Environment(name, spec, provider.name, spec_hash, env_folder(home, provider.name, name, spec_hash))


def read_record(folder: Path, warn=True) -> Optional[dict]:
    """The ready marker of the environment in ``folder``, or None when it is missing or damaged (with a warning)."""
    marker = folder / READY_MARKER
    problem = untrusted_path(folder) or untrusted_path(marker)
    if problem:
        if warn and marker.exists():
            log.warning("ignored the environment at %s: %s; it is rebuilt", folder, problem)
        return None
    try:
        record = json.loads(marker.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        for field, kinds in MARKER_FIELDS.items():
            if field in record and not isinstance(record[field], kinds):
                raise ValueError("%r is %s, not %s" % (field, type(record[field]).__name__,
                                                       " or ".join(k.__name__ for k in kinds)))
        return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if warn:
            log.warning("the ready marker %s is damaged (%s); treating the environment as unfinished", marker, exc)
        return None


def is_ready(env: Environment, warn=True) -> bool:
    return read_record(env.path, warn) is not None


def mark_used(env: Environment, record: Optional[dict] = None) -> None:
    """Record that ``env`` was opened now, by its spec's project (``record``: the ready marker, when read
    already); never fails."""
    project = project_of(env.spec)
    record = record if record is not None else read_record(env.path, warn=False)
    try:
        if record is not None and project is not None and project not in projects_of(record):
            record["projects"] = projects_of(record) + [project]
            _write_marker(env.path, record)
        else:
            os.utime(env.path / READY_MARKER)
    except OSError:
        pass


def projects_of(record: dict) -> List[str]:
    """The projects that use the environment of ``record`` (a ready marker)."""
    projects = record.get("projects")
    if isinstance(projects, list):
        return [p for p in projects if isinstance(p, str)]
    return [record["project"]] if isinstance(record.get("project"), str) else []


@contextlib.contextmanager
def install_lock(env_path: Path, wait: float = 0.0, on_wait=None, stop_waiting=None):
    """Hold the install lock of the environment at ``env_path``; yield False when another process keeps it.

    Waits up to ``wait`` seconds, calling ``on_wait()`` once when the lock is busy,
    and gives up early once ``stop_waiting()`` is true (checked every
    :data:`WAIT_SLICE` seconds).  The lock file stays when released (see the module docstring).
    """
    import filelock

    lock = filelock.FileLock(str(env_path) + ".lock")
    if not _acquire(lock, wait, on_wait, stop_waiting):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


#: Seconds between checks of ``stop_waiting`` while waiting for the install lock.
WAIT_SLICE = 0.5


def _acquire(lock, wait, on_wait, stop_waiting=None) -> bool:
    """Take ``lock`` now, or else (after ``on_wait()``) within ``wait`` seconds; False when it stays busy
    or ``stop_waiting()`` turns true first."""
    import filelock

    folder = Path(lock.lock_file).parent
    with writing_into(folder):
        try:
            lock.acquire(timeout=0)
            return True
        except filelock.Timeout:
            if wait <= 0:
                return False
    if on_wait is not None:
        on_wait()
    deadline = time.monotonic() + wait
    with writing_into(folder):
        while True:
            remaining = deadline - time.monotonic()
            try:
                lock.acquire(timeout=max(0.0, min(remaining, WAIT_SLICE)))
                return True
            except filelock.Timeout:
                if remaining <= WAIT_SLICE or (stop_waiting is not None and stop_waiting()):
                    return False


class InUse:
    """A shared hold on an environment's lock file for as long as the environment is open.

    Installs and removals take the lock exclusively, so they never run under an
    open worker: ``nbcore gc`` skips the environment, a rebuild waits for it.
    """

    def __init__(self, env_path: Path):
        self._fd = None
        try:
            fd = os.open(str(env_path) + ".lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return  # a home nobody can write to: nothing can remove the environment either
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def ensure_installed(provider, env: Environment, progress, force=False) -> bool:
    """Install ``env`` unless it is ready; return True when this call built it.

    Safe to call from many processes at once: one builds, the others wait.
    A ready environment is marked as used (:func:`mark_used`).
    """
    if not force and is_ready(env) and provider.is_installed(env):
        mark_used(env)
        return False
    with writing_into(env.path.parent):
        make_folder(env.path.parent, SHARED_FOLDER)
    waiting = "another process is installing %s (%s); waiting for it" % (env.name, env.backend)
    # An environment opened right after its install holds the lock shared while open, so a waiter stops
    # waiting once the install it waited for is done.
    ready = lambda: is_ready(env, warn=False) and provider.is_installed(env)  # noqa: E731
    with install_lock(env.path, install_timeout(), lambda: progress.step(waiting), ready) as held:
        if not held and not force and ready():
            mark_used(env)
            return False
        if not held:
            raise InstallError("gave up waiting for the install of %s after %.0f s (NBCORE_INSTALL_TIMEOUT)"
                               % (env.name, install_timeout()))
        if not force and is_ready(env, warn=False) and provider.is_installed(env):
            mark_used(env)
            return False
        if env.path.exists():
            progress.step("removing the unfinished environment at %s" % env.path)
            left = end_install_steps(env.path)
            if left:
                progress.step("killed %d process(es) an earlier, interrupted install of it left running" % left)
            provider.remove(env)
            _remove_folder(env.path)
        progress.step("installing environment %s with the %s backend into %s" % (env.name, env.backend, env.path))
        started = time.monotonic()
        try:
            with writing_into(env.path):
                os.mkdir(str(env.path), SHARED_FOLDER)
                os.chmod(str(env.path), SHARED_FOLDER)
                with installing(env.path):
                    provider.install(env, progress)
                write_record(env)
        except BaseException:
            shutil.rmtree(env.path, ignore_errors=True)
            raise
        progress.step("environment %s is ready (%.1f s)" % (env.name, time.monotonic() - started))
    remove_superseded(provider, env, progress)
    return True


def _remove_folder(folder: Path) -> None:
    """Remove ``folder``; what cannot be removed (another user's files) is moved out of the way first."""
    shutil.rmtree(str(folder), ignore_errors=True)
    if os.path.lexists(str(folder)):
        aside = tempfile.mkdtemp(prefix=".removed-", dir=str(folder.parent))
        os.rename(str(folder), os.path.join(aside, folder.name))
        shutil.rmtree(aside, ignore_errors=True)


def remove_superseded(provider, env: Environment, progress) -> None:
    """Remove the older builds of ``env``: the same name and backend, another hash, used by its project alone.

    One that is open or being installed elsewhere stays (``nbcore gc`` takes it later).
    """
    for folder in sorted(env.path.parent.glob(env.name + "-*")):
        record = read_record(folder, warn=False) if folder.is_dir() and folder != env.path else None
        if not record or record.get("name") != env.name or projects_of(record) != [project_of(env.spec)]:
            continue  # not an older build of this environment, or another project uses it too
        with install_lock(folder) as free:
            if not free:
                progress.step("kept the older build %s: it is open or being installed" % folder)
                continue
            record["path"] = str(folder)
            provider.remove(environment_from_record(record))
            shutil.rmtree(folder, ignore_errors=True)
            progress.step("removed the older build %s" % folder)


def project_of(spec: EnvironmentSpec) -> Optional[str]:
    """The project an environment belongs to: the folder of the config file that defines it."""
    return spec.base_dir


def write_record(env: Environment) -> None:
    """Write the ready marker (atomically: a temporary file renamed into place)."""
    project = project_of(env.spec)
    _write_marker(env.path, {"name": env.name, "backend": env.backend, "hash": env.spec_hash,
                             "spec": env.spec.to_dict(), "source": env.spec.source, "project": project,
                             "projects": [project] if project else [], "created": time.time()})


def _write_marker(folder: Path, record: dict) -> None:
    """Replace the ready marker atomically (a temporary file of this process renamed into place)."""
    write_file(folder / READY_MARKER, json.dumps(record, indent=2), SHARED_FILE)


def list_environments(home: Path, sizes=True) -> List[dict]:
    """Every environment folder under ``home`` with its record (``ready`` False when unfinished or damaged).

    ``used`` is when it was last opened (None when not ready); ``bytes`` its size (None without ``sizes``).
    """
    out = []
    root = home / "envs"
    if not root.is_dir():
        return out
    for backend_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in backend_dir.iterdir() if p.is_dir()):
            record = {"name": folder.name.rsplit("-", 1)[0], "backend": backend_dir.name, "hash": None,
                      "spec": {}, "source": None, "project": None}
            marker = read_record(folder)
            if marker is not None:
                record.update(marker)
            record.update(path=str(folder), ready=marker is not None, used=_used(folder) if marker else None,
                          bytes=folder_bytes(folder) if sizes else None)
            out.append(record)
    return out


def _used(folder: Path) -> Optional[float]:
    try:
        return (folder / READY_MARKER).stat().st_mtime
    except OSError:
        return None


def environment_from_record(record: dict) -> Environment:
    spec = EnvironmentSpec.from_dict(record.get("spec") or {}, source=record.get("source") or "",
                                     base_dir=record.get("project"))
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
