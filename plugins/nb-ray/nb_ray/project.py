"""The project folder as the host ships it to a node: the files ``.gitignore`` keeps, minus secrets, one tar.

What is shipped: every regular file of the folder that no ``.gitignore`` (at any depth) excludes
and that is not a well-known secret (:data:`SECRET_PATTERNS`, gitignore syntax; ``.git`` and
``__pycache__`` are never shipped).  The spec's ``ray.ship_ignore`` (gitignore syntax, after the
defaults) excludes more, and ``!PATTERN`` there ships a default-excluded file all the same.
A symbolic link to a file inside the folder is shipped as a copy of that file; one that points
outside the folder, at a folder, or nowhere is left out, with one warning line.  A ``.gitignore``
that is not UTF-8 is read byte for byte (its undecodable bytes match the same bytes in file
names), with one warning line.  The archive is deterministic (sorted, no owners or times), so
its sha256 names it.
"""
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import List, Sequence, Tuple

import pathspec

from nbcore.plugin import UserError, log

#: ``NBCORE_RAY_PROJECT_LIMIT``: the most bytes of project files shipped to a node (default 100 MiB).
LIMIT_VARIABLE = "NBCORE_RAY_PROJECT_LIMIT"
DEFAULT_LIMIT = 100 * 1024 * 1024
#: Never shipped, whatever ``.gitignore`` or ``ray.ship_ignore`` say.
ALWAYS_IGNORED = (".git", "__pycache__")
#: Files that usually hold credentials: never shipped unless ``ray.ship_ignore`` re-includes them (``!.env``).
SECRET_PATTERNS = (
    ".env", ".env.*", ".envrc", ".netrc", "_netrc", ".pgpass", ".pypirc", ".npmrc", ".git-credentials",
    ".ssh/", ".gnupg/", ".aws/", ".azure/", ".kube/", ".docker/", ".config/gcloud/",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "*.jks",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
)


def size_limit() -> int:
    text = os.environ.get(LIMIT_VARIABLE)
    try:
        return int(text) if text else DEFAULT_LIMIT
    except ValueError:
        raise UserError("%s=%r is not a number of bytes" % (LIMIT_VARIABLE, text)) from None


def _read_ignore_file(path: Path) -> List[str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8: its patterns are matched byte for byte", path)
        return data.decode("utf-8", "surrogateescape").splitlines()


def _ignore_rules(folder: Path, root: Path, rules):
    """``rules`` plus the ``.gitignore`` of ``folder``, each rule list with the folder it is relative to."""
    ignore_file = folder / ".gitignore"
    if ignore_file.is_file():
        return rules + [(folder.relative_to(root), pathspec.GitIgnoreSpec.from_lines(_read_ignore_file(ignore_file)))]
    return rules


def _ignored(relative: Path, is_dir: bool, rules) -> bool:
    """Whether the last rule list that speaks about ``relative`` excludes it (deeper ``.gitignore`` files come
    later, the secret patterns and ``ray.ship_ignore`` last)."""
    verdict = False
    for base, spec in rules:
        path = str(relative.relative_to(base)) + ("/" if is_dir else "")
        result = spec.check_file(path)
        if result.include is not None:
            verdict = result.include
    return verdict


def _shipping_rules(extra: Sequence[str]):
    return [(Path("."), pathspec.GitIgnoreSpec.from_lines(list(SECRET_PATTERNS) + list(extra)))]


def project_files(root: Path, ship_ignore: Sequence[str] = ()) -> List[Path]:
    """The files of ``root`` to ship, relative to it, sorted: ``.gitignore`` (at any depth), the secret patterns
    and ``ship_ignore`` honoured; symbolic links kept only when they point at a file inside ``root``."""
    found, skipped = [], []
    last = _shipping_rules(ship_ignore)
    real_root = os.path.realpath(str(root))

    def walk(folder, rules):
        rules = _ignore_rules(folder, root, rules)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            relative = Path(entry.path).relative_to(root)
            is_dir = entry.is_dir(follow_symlinks=False)
            if entry.name in ALWAYS_IGNORED or _ignored(relative, is_dir, rules + last):
                continue
            if is_dir:
                walk(Path(entry.path), rules)
            elif entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.isfile(target) and os.path.commonpath([real_root, target]) == real_root:
                    found.append(relative)
                else:
                    skipped.append(str(relative))
            elif entry.is_file(follow_symlinks=False):
                found.append(relative)

    walk(root, [])
    if skipped:
        log.warning("not shipped to the Ray node: symbolic link(s) pointing outside the project folder, at a folder, "
                    "or nowhere: %s (copy what the worker needs into the project, or mount it on the nodes)",
                    ", ".join(skipped))
    return found


def pack_project(root: Path, limit: int, ship_ignore: Sequence[str] = ()) -> Tuple[bytes, str]:
    """``(tar bytes, sha256 hex of them)`` of the shippable files of ``root``; :class:`UserError` past ``limit``
    bytes.  Every member is a regular file (links copied), mode ``0755`` when executable here, else ``0644``."""
    files = project_files(root, ship_ignore)
    total = sum(os.stat(root / f).st_size for f in files)
    if total > limit:
        raise UserError("the project folder %s holds %.1f MB to ship to the Ray node, over the %.1f MB limit; "
                        "list large files in .gitignore (or ray.ship_ignore) or raise %s"
                        % (root, total / 1e6, limit / 1e6, LIMIT_VARIABLE))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in files:
            with open(root / relative, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(str(relative))
            info.size = len(data)
            info.mode = 0o755 if os.access(str(root / relative), os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()
