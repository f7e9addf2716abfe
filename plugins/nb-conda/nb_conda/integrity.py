"""Checking packages against the hashes a lock file or a channel's index gives, before anything is linked.

py-rattler checks what it downloads over http(s) (sha256, else md5) but not what it
reads from this machine (a path or a ``file://`` URL), so the engine hashes those
archives itself; :func:`download_mismatch` rewords rattler's own mismatch error in
the same one line.  pip packages of a lock file get the same check for local wheels,
and pip's ``--require-hashes`` for the rest.
"""
import hashlib
import os
import re
from typing import Optional, Tuple
from urllib.parse import unquote, urlparse

#: rattler's words when a downloaded archive does not match (py-rattler 0.28).
_RATTLER_MISMATCH = re.compile(r"hash mismatch when extracting (\S+) to \S+: expected ([0-9a-f]+), got ([0-9a-f]+)")


class HashMismatch(Exception):
    """A package whose archive does not have the hash it must have; the message is the user's one line."""


def file_digest(path, kind: str = "sha256") -> str:
    """The hex ``kind`` (sha256 or md5) digest of the file ``path``."""
    digest = hashlib.new(kind)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_path(url: str) -> Optional[str]:
    """The file a package URL names on this machine (a ``file://`` URL or a plain path), or None for a remote one."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from urllib.request import url2pathname  # here: urllib.request (http.client, email) is slow to import

        return url2pathname(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # a path, or C:\\...
        return url
    return None


def _hex(value) -> Optional[str]:
    if value is None:
        return None
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value).lower()


def expected_hash(sha256, md5) -> Optional[Tuple[str, str]]:
    """``(kind, hex)`` to check: the sha256 when there is one, else the md5, else None."""
    if _hex(sha256):
        return "sha256", _hex(sha256)
    if _hex(md5):
        return "md5", _hex(md5)
    return None


def mismatch_message(package: str, source: str, origin: str, kind: str, expected: str, actual: str) -> str:
    return ("%s (%s) does not match %s: %s expected %s, actual %s; nothing was installed"
            % (package, source, origin, kind, expected, actual))


def required_hash(package: str, origin: str, sha256, md5) -> Tuple[str, str]:
    """``(kind, hex)`` to check ``package`` against; raise :class:`HashMismatch` when ``origin`` gives none."""
    expected = expected_hash(sha256, md5)
    if expected is None:
        raise HashMismatch("%s has no sha256 or md5 in %s: nothing can be checked, so nothing was installed "
                           "(write the lock file again with `nbcore lock`)" % (package, origin))
    return expected


def check_file(package: str, path: str, origin: str, sha256, md5) -> None:
    """Raise :class:`HashMismatch` unless the archive ``path`` has the sha256 (else md5) ``origin`` gives for it."""
    kind, value = required_hash(package, origin, sha256, md5)
    actual = file_digest(path, kind)
    if actual != value:
        raise HashMismatch(mismatch_message(package, path, origin, kind, value, actual))


def download_mismatch(error_text: str, origin: str) -> Optional[str]:
    """The one-line message for rattler's "hash mismatch when extracting" error, or None for another error."""
    found = _RATTLER_MISMATCH.search(error_text)
    if not found:
        return None
    url, expected, actual = found.groups()
    kind = "sha256" if len(expected) == 64 else "md5"
    return mismatch_message(url.rsplit("/", 1)[-1], url, origin, kind, expected, actual)
