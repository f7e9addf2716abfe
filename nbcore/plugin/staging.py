"""Content-addressed folders of files, verified before reuse (the worker code, projects shipped to nodes).

:func:`stage_files` makes a folder hold exactly a given set of files and a stamp
file with their digest.  Before a folder is reused its stamp, the contents and
modes of its files and the owner of everything in it are checked; a folder that
fails is rebuilt beside it and swapped in with one rename.  Files are ``0644``
and folders ``0755`` (``0600``/``0700`` for the user alone) whatever the umask.
"""
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Dict, Iterable

from ..home import writing_into

#: The file in a staged folder holding the sha256 of its archive.
STAMP = "nbcore-worker.sha256"
FILE_MODE = 0o644
FOLDER_MODE = 0o755
#: ``(file, folder)`` modes of a staged folder for everyone to read, and for its owner alone.
SHARED_MODES = (FILE_MODE, FOLDER_MODE)
PRIVATE_MODES = (0o600, 0o700)
#: Python's bytecode cache: created with the folders (so never under the umask), its ``.pyc`` files tolerated.
BYTECODE = "__pycache__"


def folders_of(files: Dict[str, bytes]):
    """Every folder that holds one of ``files`` (relative, parents first)."""
    return sorted({"/".join(target.split("/")[:i]) for target in files for i in range(1, target.count("/") + 1)})


def stage_files(folder: Path, files: Dict[str, bytes], digest: str, private: bool = False,
                executables: Iterable[str] = ()) -> Path:
    """Make ``folder`` hold exactly ``files`` (relative path -> content) and a stamp file holding ``digest``.

    A folder already there is reused when its stamp, its files (sizes; contents of those changed since
    the stamp) and the owner of everything in it check out; otherwise the files are written into a
    temporary folder beside it, which replaces it with one rename (a damaged folder is moved aside
    first).  Files are ``0644`` and folders ``0755``, or ``0600``/``0700`` with ``private``, whatever
    the umask; ``executables`` (paths among ``files``) also get the execute bits of those modes.
    Python's ``__pycache__`` folders are made with the folders and tolerated.  Return ``folder``.
    """
    if not _intact(folder, files, digest):
        with writing_into(folder.parent):
            _replace(folder, files, digest, PRIVATE_MODES if private else SHARED_MODES, frozenset(executables))
    return folder


def _trusted(st: os.stat_result) -> bool:
    """Owned by this user (or root) and writable by nobody else."""
    return st.st_uid in (os.getuid(), 0) and not st.st_mode & 0o022


def _intact(folder: Path, files: Dict[str, bytes], digest: str) -> bool:
    """Whether ``folder`` holds exactly ``files`` and the stamp of ``digest``, every entry trusted.

    Contents are compared only for files changed after the stamp was written (a newer ``ctime``,
    which no program can set back short of changing the clock); for the others the owner, mode
    and size checks suffice, which keeps reuse cheap.
    """
    stamp = digest.encode() + b"\n"
    folders = folders_of(files)
    known = set(folders)
    try:
        with open(str(folder / STAMP), "rb") as f:
            if f.read() != stamp:
                return False
            stamped = os.fstat(f.fileno()).st_ctime_ns
        changed = []
        seen = 0
        for relative in [""] + folders:
            path = os.path.join(str(folder), relative) if relative else str(folder)  # no "/": lstat the link itself
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or not _trusted(st):
                return False
            with os.scandir(path) as entries:
                for entry in entries:
                    target = relative + "/" + entry.name if relative else entry.name
                    st = entry.stat(follow_symlinks=False)
                    if not _trusted(st):
                        return False
                    if stat.S_ISDIR(st.st_mode) and (target in known or entry.name == BYTECODE):
                        continue
                    if target == STAMP:
                        seen += 1
                        continue
                    if not stat.S_ISREG(st.st_mode) or target not in files or st.st_size != len(files[target]):
                        return False
                    seen += 1
                    if st.st_ctime_ns > stamped:
                        changed.append(target)
        if seen != len(files) + 1:
            return False
        for target in changed:
            with open(os.path.join(str(folder), target), "rb") as f:
                if f.read() != files[target]:
                    return False
    except OSError:
        return False
    return True


def _replace(folder: Path, files: Dict[str, bytes], digest: str, modes=SHARED_MODES, executables=frozenset()) -> None:
    """Build the folder beside ``folder`` and rename it into place, moving a damaged one aside first."""
    _make_folder(folder.parent, modes[1])
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=str(folder.parent)))
    try:
        _write_tree(tmp, files, digest, modes, executables)
        for _ in range(3):  # other processes may be staging the same folder at once
            try:
                os.rename(str(tmp), str(folder))
                return
            except OSError:
                if _intact(folder, files, digest):
                    return
            aside = Path(tempfile.mkdtemp(prefix=".damaged-", dir=str(folder.parent)))
            try:
                os.rename(str(folder), str(aside / folder.name))
            except FileNotFoundError:
                pass
            shutil.rmtree(str(aside), ignore_errors=True)
        os.rename(str(tmp), str(folder))
    finally:
        shutil.rmtree(str(tmp), ignore_errors=True)


def _write_tree(root: Path, files: Dict[str, bytes], digest: str, modes=SHARED_MODES, executables=frozenset()) -> None:
    file_mode, folder_mode = modes
    os.chmod(str(root), folder_mode)
    if any("/" not in target and target.endswith(".py") for target in files):
        os.mkdir(str(root / BYTECODE), folder_mode)
        os.chmod(str(root / BYTECODE), folder_mode)
    for relative in folders_of(files):
        for made in (root / relative, root / relative / BYTECODE):
            os.mkdir(str(made))
            os.chmod(str(made), folder_mode)
    for target, data in list(files.items()) + [(STAMP, digest.encode() + b"\n")]:
        mode = file_mode | (file_mode & 0o444) >> 2 if target in executables else file_mode
        fd = os.open(str(root / target), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)


def _make_folder(path: Path, mode: int = FOLDER_MODE) -> None:
    """Create ``path`` and its missing parents as ``mode`` whatever the umask; existing folders stay as they are."""
    if path.is_dir():
        return
    _make_folder(path.parent, mode)
    try:
        os.mkdir(str(path))
    except FileExistsError:
        return
    os.chmod(str(path), mode)
