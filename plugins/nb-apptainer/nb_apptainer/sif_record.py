"""SIF files checked against a record of their sha256, cheaply: re-hashed only when their stamp changed.

A record (JSON: ``sha256``, ``stamp``) is written once a SIF is known good: by an
install, in the environment's folder, for the SIF the environment runs (after a
published image's label was checked); and by a conversion, beside the SIF in the
image cache.  A check compares the file's stamp (size, modification and change
times in nanoseconds, inode: one ``stat``) with the recorded one and hashes the
file again only when the stamp differs.  The change time cannot be set back, so
content written under the old size and modification time (``touch -d``) is hashed
again too.  A file whose hash is still the recorded one gets its new stamp
recorded (a ``chmod``, a copy back in place); any other is a mismatch.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import List, NamedTuple, Optional

#: The record of the SIF an environment runs, in the environment's folder.
ENVIRONMENT_RECORD = "image-sha256.json"
#: What a converted SIF's record in the image cache adds to the SIF's name.
CACHE_RECORD_SUFFIX = ".sha256.json"
#: Mode of a record file, whatever the umask (readable by those who may use the environment).
RECORD_MODE = 0o644
CHUNK = 1 << 20


class Mismatch(NamedTuple):
    """A SIF that is not the recorded one: its sha256 now and the recorded one."""

    found: str
    recorded: str


def cache_record(sif) -> Path:
    """Where the image cache keeps the record of its converted ``sif``."""
    return Path(str(sif) + CACHE_RECORD_SUFFIX)


def stamp(stat: os.stat_result) -> List[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def sha256_of(handle) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def record(path: Path, sif: str) -> str:
    """Hash ``sif`` and record it, with its stamp, in ``path``; return the sha256."""
    with open(sif, "rb") as handle:
        taken = stamp(os.fstat(handle.fileno()))  # before reading: a change while hashing gives another stamp
        sha256 = sha256_of(handle)
    _write(path, {"sha256": sha256, "stamp": taken})
    return sha256


def check(path: Path, sif: str) -> Optional[Mismatch]:
    """None when ``sif`` is the SIF ``path`` records, else the :class:`Mismatch`.  Without a readable record the
    SIF is recorded as it is now (environments and cached images from before records were kept)."""
    recorded = _read(path)
    if recorded is None:
        try:
            record(path, sif)
        except OSError:
            pass  # a read-only folder: nothing to compare with, as before records were kept
        return None
    with open(sif, "rb") as handle:
        taken = stamp(os.fstat(handle.fileno()))
        if taken == recorded["stamp"]:
            return None
        sha256 = sha256_of(handle)
    if sha256 != recorded["sha256"]:
        return Mismatch(sha256, recorded["sha256"])
    try:
        _write(path, {"sha256": sha256, "stamp": taken})
    except OSError:
        pass  # a read-only folder: the next check hashes again
    return None


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
        if isinstance(data.get("sha256"), str) and isinstance(data.get("stamp"), list):
            return data
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _write(path: Path, data: dict) -> None:
    """Replace ``path`` atomically (a temporary file renamed into place)."""
    fd, temporary = tempfile.mkstemp(dir=str(path.parent), prefix="." + path.name + "-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.chmod(temporary, RECORD_MODE)
        os.replace(temporary, str(path))
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
