"""Where nbcore keeps its files: ``NBCORE_HOME`` (default: the user cache folder)."""
import contextlib
import errno
import os
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
