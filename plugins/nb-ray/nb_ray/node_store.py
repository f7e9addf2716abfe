"""A node's store of what hosts ship to it (worker code, project folders), under ``NBCORE_HOME/ray/<kind>/``.

Each shipped archive is kept as it came, ``<sha256>.tar`` (``0600``; its modification time is
its last use), and unpacked beside it into the folder ``<sha256>/`` by the core's
:func:`nbcore.plugin.stage_files`: written into a temporary folder and renamed into place, a
stamp holding the hash, and checked before every reuse (stamp, files, owners), rebuilt from the
archive when damaged.  An archive is accepted only when its sha256 is the name the host asked
for, and reused only when it still is and belongs to this user alone.  Project folders are the
user's alone (files ``0600``, ``0700`` when executable, folders ``0700``); worker code is
``0644``/``0755`` as the core stages it.  A worker holds a shared lock on its archives while it
runs (:func:`hold`); ``nbcore gc`` on the node (:func:`collect_garbage`) removes archives nobody
holds, by the same options as environments.
"""
import fcntl
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nbcore.plugin import nbcore_home, stage_files

#: What hosts ship: the worker code, and project folders (which are private to the user).
KINDS = ("worker", "project")
PRIVATE_KINDS = ("project",)
DAY = 86400.0


def store_root() -> Path:
    return nbcore_home() / "ray"


def folder_of(kind: str, digest: str) -> Path:
    """Where the node keeps the unpacked archive ``digest`` of ``kind``."""
    return store_root() / kind / digest


def _archive_of(folder: Path) -> Path:
    return folder.with_name(folder.name + ".tar")


def _check_name(kind: str, digest: str) -> None:
    if kind not in KINDS or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("not a shipped archive: %r %r" % (kind, digest))


def stored(kind: str, digest: str) -> Optional[str]:
    """The folder of archive ``digest`` of ``kind`` when this node has the archive intact (the folder checked,
    rebuilt from it when damaged), else None (the host ships it)."""
    _check_name(kind, digest)
    folder = folder_of(kind, digest)
    archive = _archive_of(folder)
    try:
        with open(str(archive), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
                return None
            data = f.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != digest:
        return None
    return _unpack(kind, digest, data)


def store(kind: str, digest: str, data: bytes) -> str:
    """Keep ``data`` as archive ``digest`` of ``kind`` and unpack it; return the folder.  ``ValueError`` when
    ``data`` is not what ``digest`` names."""
    _check_name(kind, digest)
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ValueError("the %s archive shipped to this node is damaged: expected sha256 %s, got %s"
                         % (kind, digest, actual))
    folder = folder_of(kind, digest)
    _make_private_folder(folder.parent)
    fd, temporary = tempfile.mkstemp(prefix=".%s-" % digest[:12], suffix=".tar", dir=str(folder.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
        os.replace(temporary, str(_archive_of(folder)))
    except BaseException:
        os.unlink(temporary)
        raise
    return _unpack(kind, digest, data)


def _unpack(kind: str, digest: str, data: bytes) -> str:
    files, executables = _members(data)
    folder = stage_files(folder_of(kind, digest), files, digest, private=kind in PRIVATE_KINDS,
                         executables=executables)
    os.utime(str(_archive_of(folder)))  # its last use, for nbcore gc --older-than
    return str(folder)


def _members(data: bytes) -> Tuple[Dict[str, bytes], List[str]]:
    """The regular files of a tar (relative path -> content) and those executable; anything else is refused."""
    files, executables = {}, []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isdir():
                continue
            parts = member.name.split("/")
            if not member.isreg() or member.name.startswith("/") or ".." in parts or "" in parts:
                raise ValueError("the shipped archive holds %r, which is not a plain relative file" % member.name)
            files[member.name] = tar.extractfile(member).read()
            if member.mode & 0o100:
                executables.append(member.name)
    return dict(sorted(files.items())), executables


def _make_private_folder(path: Path) -> None:
    if path.is_dir():
        return
    _make_private_folder(path.parent)
    try:
        os.mkdir(str(path), 0o700)
        os.chmod(str(path), 0o700)
    except FileExistsError:
        pass


def hold(path: str):
    """A shared lock on the archive whose folder holds ``path`` (None when ``path`` is in no shipped folder), for
    as long as the returned file stays open: ``nbcore gc`` leaves it alone meanwhile."""
    root = str(store_root())
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(root))
    parts = relative.split(os.sep)
    if relative.startswith("..") or len(parts) < 2 or parts[0] not in KINDS:
        return None
    try:
        handle = open(str(_archive_of(store_root() / parts[0] / parts[1])), "rb")
    except OSError:
        return None
    fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
    return handle


def collect_garbage(backend: str, unreferenced: bool, older_than_days: Optional[float], dry_run: bool) -> List[dict]:
    """Remove (or list, with ``dry_run``) shipped archives and their folders: leftovers of an interrupted
    unpack always; with ``unreferenced`` every archive, with ``older_than_days`` those not used for that long;
    one a worker holds (:func:`hold`) stays.  Records as ``nbcore gc``'s (``name`` is ``KIND/HASH[:12]``)."""
    now = time.time()
    removed = []
    for kind in KINDS:
        parent = store_root() / kind
        if not parent.is_dir():
            continue
        for entry in sorted(parent.iterdir()):
            if entry.name.startswith((".staging-", ".damaged-")) or (entry.name.startswith(".") and
                                                                     entry.name.endswith(".tar")):
                if now - entry.lstat().st_mtime > DAY:  # an interrupted unpack's leftovers, surely not in progress
                    removed.append(_record(backend, kind, entry.name, entry, "unfinished", dry_run))
                continue
            if entry.suffix != ".tar":
                if entry.is_dir() and not _archive_of(entry).exists():
                    removed.append(_record(backend, kind, entry.name[:12], entry, "unfinished", dry_run))
                continue
            reason = "unreferenced" if unreferenced else None
            used = entry.stat().st_mtime
            if reason is None and older_than_days is not None and now - used > older_than_days * DAY:
                reason = "unused for %d days" % ((now - used) // DAY)
            if reason is None:
                continue
            with open(str(entry), "rb") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a worker runs in it
                folder = entry.with_suffix("")
                record = _record(backend, kind, folder.name[:12], folder, reason, True)
                record["bytes"] += entry.stat().st_size
                if not dry_run:
                    shutil.rmtree(str(folder), ignore_errors=True)
                    entry.unlink()
                removed.append(record)
    return removed


def _record(backend, kind, name, path: Path, reason, dry_run) -> dict:
    size = _bytes(path)
    if not dry_run:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(str(path), ignore_errors=True)
        elif os.path.lexists(str(path)):
            path.unlink()
    return {"name": "%s/%s" % (kind, name), "backend": backend, "kind": "shipped " + kind, "reason": reason,
            "bytes": size, "path": str(path)}


def _bytes(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size if os.path.lexists(str(path)) else 0
    total = 0
    for folder, _, names in os.walk(str(path)):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total
