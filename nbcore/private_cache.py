"""Small JSON values this user's nbcore remembers between starts, under ``NBCORE_HOME/<folder>/<key>.json``.

What is kept there is trusted when read back (a cached configuration's
``install_script`` runs, a cached plugin module is imported), so each folder is
this user's alone: ``0700`` and its entries ``0600`` whatever the umask, and an
entry or folder another user owns or could have written is ignored with a
warning and rebuilt.  A value that cannot be read or written (read-only home, a
damaged entry) is a miss, never an error.  Each folder keeps its most recently
written entries only.
"""
import json
import os
import shutil
import tempfile

from .home import PRIVATE_FILE, PRIVATE_FOLDER, nbcore_home, untrusted, untrusted_path, write_file
from .log import log


class PrivateCache:
    """The entries of one folder of ``NBCORE_HOME`` (``name``), at most ``max_entries`` of them."""

    def __init__(self, name: str, max_entries: int, what: str, instead: str):
        self.name = name
        self.max_entries = max_entries
        #: For the warning about an untrusted entry: what it holds ("cached configuration") and what is done
        #: instead ("it is checked again").
        self.what = what
        self.instead = instead

    def folder(self):
        return nbcore_home() / self.name

    def load(self, key):
        """The value stored under ``key``, or None (a miss: also for an entry another user could have written)."""
        folder = self.folder()
        path = folder / (key + ".json")
        try:
            fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, encoding="utf-8") as f:
            folder_problem = untrusted_path(folder)
            problem = folder_problem or untrusted(os.fstat(fd))
            if problem:
                log.warning("ignored the %s %s: %s; %s and the cache rebuilt",
                            self.what, folder if folder_problem else path, problem, self.instead)
                return None
            try:
                return json.load(f)
            except (OSError, ValueError):
                return None

    def store(self, key, value):
        """Remember ``value`` (JSON data that must read back equal) under ``key``; silently skipped when impossible."""
        try:
            text = json.dumps(value, allow_nan=False)
            if json.loads(text) != value:  # types JSON does not keep (dates, non-string keys, tuples)
                return
        except (TypeError, ValueError):
            return
        folder = self.folder()
        try:
            private_folder(folder)
            write_file(folder / (key + ".json"), text, PRIVATE_FILE)
            self._prune(folder)
        except OSError:
            pass

    def _prune(self, folder):
        entries = []
        for path in folder.glob("*.json"):
            try:
                entries.append((path.stat().st_mtime, path))
            except OSError:
                pass
        for _, path in sorted(entries)[:-self.max_entries]:
            try:
                path.unlink()
            except OSError:
                pass


def private_folder(folder):
    """Make ``folder`` exist as this user's alone (``0700`` whatever the umask); one another user owns or could
    write into is moved aside and removed first."""
    if untrusted_path(folder):
        aside = tempfile.mkdtemp(prefix=".untrusted-", dir=str(folder.parent))
        os.rename(str(folder), os.path.join(aside, folder.name))
        shutil.rmtree(aside, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(str(folder), PRIVATE_FOLDER)
    except FileExistsError:
        return
    os.chmod(str(folder), PRIVATE_FOLDER)
