"""The project folder as the host ships it to a node: the files ``.gitignore`` keeps, one content-addressed tar."""
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import List, Tuple

import pathspec

from nbcore.plugin import UserError

#: ``NBCORE_RAY_PROJECT_LIMIT``: the most bytes of project files shipped to a node (default 100 MiB).
LIMIT_VARIABLE = "NBCORE_RAY_PROJECT_LIMIT"
DEFAULT_LIMIT = 100 * 1024 * 1024
#: Never shipped, whatever ``.gitignore`` says.
ALWAYS_IGNORED = (".git", "__pycache__")


def size_limit() -> int:
    text = os.environ.get(LIMIT_VARIABLE)
    try:
        return int(text) if text else DEFAULT_LIMIT
    except ValueError:
        raise UserError("%s=%r is not a number of bytes" % (LIMIT_VARIABLE, text)) from None


def _ignore_rules(folder: Path, root: Path, rules):
    """``rules`` plus the ``.gitignore`` of ``folder``, each rule list with the folder it is relative to."""
    ignore_file = folder / ".gitignore"
    if ignore_file.is_file():
        return rules + [(folder.relative_to(root), pathspec.GitIgnoreSpec.from_lines(ignore_file.read_text().splitlines()))]
    return rules


def _ignored(relative: Path, is_dir: bool, rules) -> bool:
    """Whether the deepest ``.gitignore`` rule that speaks about ``relative`` excludes it."""
    verdict = False
    for base, spec in rules:
        path = str(relative.relative_to(base)) + ("/" if is_dir else "")
        result = spec.check_file(path)
        if result.include is not None:
            verdict = result.include
    return verdict


def project_files(root: Path) -> List[Path]:
    """The files of ``root`` to ship, relative to it, sorted: ``.gitignore`` (at any depth) honoured."""
    found = []

    def walk(folder, rules):
        rules = _ignore_rules(folder, root, rules)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            relative = Path(entry.path).relative_to(root)
            is_dir = entry.is_dir(follow_symlinks=False)
            if entry.name in ALWAYS_IGNORED or _ignored(relative, is_dir, rules):
                continue
            if is_dir:
                walk(Path(entry.path), rules)
            elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                found.append(relative)

    walk(root, [])
    return found


def pack_project(root: Path, limit: int) -> Tuple[bytes, str]:
    """``(tar bytes, sha256 hex)`` of the shippable files of ``root``; :class:`UserError` past ``limit`` bytes."""
    files = project_files(root)
    total = sum(os.lstat(root / f).st_size for f in files)
    if total > limit:
        raise UserError("the project folder %s holds %.1f MB to ship to the Ray node, over the %.1f MB limit; "
                        "list large files in .gitignore or raise %s" % (root, total / 1e6, limit / 1e6, LIMIT_VARIABLE))
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative in files:
            info = tar.gettarinfo(str(root / relative), arcname=str(relative))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            digest.update(("%s\0%o\0%s\0" % (relative, info.mode, info.linkname)).encode())
            if info.isreg():
                with open(root / relative, "rb") as f:
                    data = f.read()
                digest.update(hashlib.sha256(data).digest())
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue(), digest.hexdigest()
