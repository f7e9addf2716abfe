"""A published image's manifest digest, asked of its registry over the registry HTTP API (no daemon, no docker-py).

For engines without a Docker daemon (nb-apptainer, through the ``docker-image``
capability): they resolve the digest once, then fetch ``REPOSITORY@DIGEST``, which
the engine checks the content against.  Speaks the distribution API's ``HEAD
/v2/<repository>/manifests/<tag>``, with the registry's Basic or Bearer-token login
when it asks for one.  Plain http for loopback registries (as Docker allows) or when
asked, https otherwise.
"""
import base64
import ipaddress
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional, Tuple

from nbcore.plugin import InstallError

#: The manifest formats asked for, so that the digest is the one ``docker push`` reported.
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))
TIMEOUT = 30.0


def split_name(name: str) -> Tuple[str, str, str]:
    """``(registry host, repository, tag)`` of ``HOST/REPO:TAG`` (Docker Hub's host when the name has none)."""
    first, slash, rest = name.partition("/")
    if not (slash and ("." in first or ":" in first or first == "localhost")):
        first, rest = "registry-1.docker.io", name if "/" in name else "library/" + name
    repository, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = rest, "latest"
    return first, repository, tag


def _loopback(host: str) -> bool:
    bare = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def manifest_digest(name: str, credentials: Optional[Tuple[str, str]] = None,
                    plain_http: bool = False) -> Optional[str]:
    """The digest of ``name``'s manifest in its registry, None when the registry does not have it.

    ``credentials`` (user, password) answer a login the registry asks for.  Raise :class:`InstallError` naming
    the registry's answer when it cannot tell (login refused, unreachable, other failures).
    """
    host, repository, tag = split_name(name)
    scheme = "http" if plain_http or _loopback(host) else "https"
    url = "%s://%s/v2/%s/manifests/%s" % (scheme, host, repository, tag)
    authorization = None
    for _ in range(2):
        request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                digest = response.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 401 and authorization is None:
                authorization = _login(exc.headers.get("WWW-Authenticate") or "", credentials, name)
                continue
            if exc.code == 401:
                break
            raise InstallError("looking up %s in its registry failed: %s" % (name, _said(exc))) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InstallError("looking up %s in its registry failed: %s" % (name, reason)) from None
        if not digest:
            raise InstallError("looking up %s in its registry failed: the registry named no digest" % name)
        return digest
    raise InstallError("looking up %s in its registry failed: UNAUTHORIZED: the registry refused the login" % name)


def _said(exc) -> str:
    text = "HTTP %d" % exc.code
    try:
        errors = json.loads(exc.read() or b"{}").get("errors") or []
        text += ": " + "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in errors)
    except (ValueError, AttributeError, OSError):
        pass
    return text


def _login(challenge: str, credentials, name) -> str:
    """The ``Authorization`` header answering the registry's ``WWW-Authenticate`` challenge."""
    basic = None
    if credentials:
        basic = "Basic " + base64.b64encode(("%s:%s" % credentials).encode()).decode()
    scheme, _, parameters = challenge.partition(" ")
    if scheme.lower() != "bearer":
        if basic is None:
            raise InstallError("looking up %s in its registry failed: UNAUTHORIZED: authentication required" % name)
        return basic
    fields = dict(re.findall(r'(\w+)="([^"]*)"', parameters))
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    request = urllib.request.Request(fields.get("realm", "") + ("?" + query if query else ""))
    if basic:
        request.add_header("Authorization", basic)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise InstallError("looking up %s in its registry failed: UNAUTHORIZED: %s" % (name, _said(exc))) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InstallError("looking up %s in its registry failed: getting a token: %s" % (name, exc)) from None
    return "Bearer " + (answer.get("token") or answer.get("access_token") or "")
