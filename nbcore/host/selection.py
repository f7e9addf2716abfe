"""Choosing the backend and the protocol list.

Backend: the explicit choice (CLI flag or ``open_backend(backend=...)``) wins,
then ``NBCORE_BACKEND`` (alias ``NERFBASELINES_BACKEND``), then the config
file's ``backend:``, then the first available backend in the environment's
``backends:`` list followed by :data:`DEFAULT_ORDER`.

Protocols: ``NBCORE_PROTOCOL`` (alias ``NERFBASELINES_PROTOCOL``), else the
config file's ``protocol:``, else :data:`DEFAULT_PROTOCOLS`.  The first entry is
the fallback; the others are tried in reverse order after connecting.
"""
import logging
import os
from typing import List, Optional, Tuple

from ..errors import BackendUnavailable, UserError
from ..plugin.registry import KNOWN_BACKENDS, missing_hint

DEFAULT_ORDER = ("conda", "docker", "apptainer", "venv")
DEFAULT_PROTOCOLS = "tcp-pickle,shm-pickle"
FALLBACK_OF_LAST_RESORT = "tcp-pickle"

log = logging.getLogger("nbcore")


def _env(name):
    return os.environ.get("NBCORE_" + name) or os.environ.get("NERFBASELINES_" + name)


def _summary(registry, env) -> str:
    parts = []
    for name, provider in sorted(registry.backends.items()):
        reason = provider.check_available() or provider.check_spec(env)
        parts.append(name if reason is None else "%s (unavailable: %s)" % (name, reason))
    missing = [n for n in KNOWN_BACKENDS if n not in registry.backends]
    hint = "; installable: " + ", ".join("%s (pip install %s)" % (n, KNOWN_BACKENDS[n]) for n in missing) if missing else ""
    return "installed backends: " + ", ".join(parts) + hint


def choose_backend(registry, env_for, spec, requested=None, config_default=None):
    """Return ``(provider, how)``; ``env_for(backend_name)`` builds the Environment to check."""
    choice, how = requested, "requested"
    if not choice and _env("BACKEND"):
        choice, how = _env("BACKEND"), "from NBCORE_BACKEND"
    if not choice and config_default:
        choice, how = config_default, "from the config file"
    if choice:
        provider = registry.backends.get(choice)
        if provider is None:
            raise BackendUnavailable("unknown backend %r%s; %s" % (choice, missing_hint(choice), _summary(registry, env_for("venv"))))
        reason = provider.check_available() or provider.check_spec(env_for(choice))
        if reason:
            raise BackendUnavailable("backend %r cannot run this environment: %s; %s"
                                     % (choice, reason, _summary(registry, env_for(choice))))
        return provider, how
    order = list(dict.fromkeys(list(spec.backends) + list(DEFAULT_ORDER)))
    reasons = []
    for name in order:
        provider = registry.backends.get(name)
        if provider is None:
            reasons.append("%s: not installed%s" % (name, missing_hint(name)))
            continue
        reason = provider.check_available() or provider.check_spec(env_for(name))
        if reason is None:
            return provider, "automatic"
        reasons.append("%s: %s" % (name, reason))
    raise BackendUnavailable("no backend can run this environment (%s)" % "; ".join(reasons))


def protocol_list(config_default: Optional[str] = None, explicit: Optional[str] = None) -> List[str]:
    """The protocol names in order, first = fallback."""
    raw = explicit or _env("PROTOCOL") or config_default or DEFAULT_PROTOCOLS
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise UserError("the protocol list %r is empty; use e.g. %s" % (raw, DEFAULT_PROTOCOLS))
    return names


def plan_protocols(registry, names: List[str]) -> Tuple[object, List[Tuple[str, object]]]:
    """Return ``(fallback_provider, upgrade_candidates)``; skipped entries are logged with the reason."""
    fallback_name = names[0]
    fallback = registry.protocols.get(fallback_name)
    reason = None
    if fallback is None:
        reason = "unknown protocol%s" % missing_hint(fallback_name)
    elif fallback.check_available():
        reason = fallback.check_available()
    elif not _can_listen(fallback):
        reason = "it cannot be a fallback (it needs an established connection)"
    if reason:
        log.warning("protocol %s cannot be the fallback: %s; using %s", fallback_name, reason, FALLBACK_OF_LAST_RESORT)
        fallback_name = FALLBACK_OF_LAST_RESORT
        fallback = registry.protocols[FALLBACK_OF_LAST_RESORT]
    candidates = []
    for name in reversed(names[1:]):
        if name == fallback_name or any(name == n for n, _ in candidates):
            continue
        provider = registry.protocols.get(name)
        if provider is None:
            log.info("protocol %s skipped: unknown protocol%s", name, missing_hint(name))
            continue
        reason = provider.check_available()
        if reason:
            log.info("protocol %s skipped: unavailable on the host: %s", name, reason)
            continue
        candidates.append((name, provider))
    return fallback, candidates


def _can_listen(provider) -> bool:
    from ..plugin.protocol import ProtocolProvider

    return type(provider).listen is not ProtocolProvider.listen
