"""Where nbcore keeps its files: ``NBCORE_HOME`` (default: the user cache folder)."""
import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional

from .errors import UserError

#: ``errno`` values that mean "this folder cannot take the write", whatever was being written.
_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


class HomeNotWritable(UserError):
    """nbcore cannot write into its cache folder: read-only, not permitted, or the disk is full."""


#: The variables that move the cache, the first one set winning.
HOME_VARIABLES = ("NBCORE_HOME", "NERFBASELINES_PREFIX")


def home_variable():
    """The variable that sets the cache folder, or None for the default."""
    return next((name for name in HOME_VARIABLES if os.environ.get(name)), None)


def nbcore_home() -> Path:
    """The root of every nbcore cache; ``NBCORE_HOME`` moves all of them at once."""
    variable = home_variable()
    if variable:
        return Path(os.environ[variable]).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("nbcore", appauthor=False))


def unwritable_error(folder, exc: OSError) -> Optional[HomeNotWritable]:
    """The one-line error for ``exc`` raised while writing into ``folder``, or None when it is another failure.

    An error about a path outside ``folder`` (and not one of its parents) is another failure.
    """
    if exc.filename is not None:
        path, inside = os.path.abspath(os.fsdecode(exc.filename)), os.path.abspath(str(folder))
        if not (path == inside or path.startswith(inside + os.sep) or inside.startswith(path + os.sep)):
            return None
    if exc.errno in _FULL:
        fix = "free some space there, or set NBCORE_HOME to a folder on another disk"
    elif exc.errno in _READ_ONLY:
        fix = "set NBCORE_HOME to a folder you can write to"
    else:
        return None
    return HomeNotWritable("cannot write to %s (%s): %s" % (folder, exc.strerror or exc, fix))


@contextlib.contextmanager
def writing_into(folder):
    """Turn a read-only, permission or disk-full ``OSError`` raised inside the block into :class:`HomeNotWritable`."""
    try:
        yield
    except OSError as exc:
        error = unwritable_error(folder, exc)
        if error is None:
            raise
        raise error from None


def check_writable(home: Path) -> Optional[str]:
    """Why nbcore cannot write into ``home`` (or the folder that would hold it), or None when it can.

    Writes and removes a small probe file; creates nothing else.
    """
    folder = home
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        with writing_into(folder):
            with tempfile.TemporaryFile(dir=str(folder), prefix=".nbcore-probe-") as probe:
                probe.write(b"\0" * 4096)
                probe.flush()
                os.fsync(probe.fileno())
    except HomeNotWritable as exc:
        return str(exc)
    except OSError as exc:
        return "cannot write to %s (%s)" % (folder, exc.strerror or exc)
    return None


#: Modes of what nbcore writes for this user alone (the config cache) and of what others may read (environments).
PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700
SHARED_FILE, SHARED_FOLDER = 0o644, 0o755


def untrusted(st: os.stat_result) -> Optional[str]:
    """Why a file or folder with status ``st`` (from ``lstat``) may have been written by another user, or None.

    Trusted: owned by this user (or root) and writable by nobody else.
    """
    if st.st_uid not in (os.geteuid(), 0):
        return "it belongs to uid %d, not to you (uid %d)" % (st.st_uid, os.geteuid())
    if st.st_mode & 0o022:
        return "it is writable by %s" % ("its group" if st.st_mode & 0o020 else "other users")
    return None


def untrusted_path(path) -> Optional[str]:
    """:func:`untrusted` of ``path`` itself (a symbolic link is never trusted); None when it does not exist."""
    try:
        st = os.lstat(str(path))
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    return untrusted(st)


def make_folder(path, mode: int) -> None:
    """Create ``path`` and its missing parents with ``mode`` whatever the umask; existing folders stay as they are."""
    path = Path(path)
    if path.is_dir():
        return
    make_folder(path.parent, mode)
    try:
        os.mkdir(str(path))
    except FileExistsError:
        return
    os.chmod(str(path), mode)


def write_file(path, text: str, mode: int) -> None:
    """Replace ``path`` with ``text`` atomically (a new file of this user renamed into place), with ``mode``
    whatever the umask: a file another user planted there is replaced, never written through."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
