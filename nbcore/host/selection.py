"""Choosing the backend and the protocol list.

Backend: the explicit choice (CLI flag or ``open_backend(backend=...)``) wins,
then ``NBCORE_BACKEND`` (alias ``NERFBASELINES_BACKEND``), then the config
file's ``backend:``; then, without a ``backends:`` list in the spec, a backend
whose section the spec has and that :attr:`~nbcore.plugin.BackendProvider.required_by_section`
(it must run the spec: unavailable is an error, not a reason to try another);
then the first available backend in the environment's ``backends:`` list (or,
without one, the backend of the spec's only backend section), then every backend
with an ``auto_priority``, highest first.  Without a ``backends:`` list, an
available backend that already has a ready build of the same spec wins over
the first in that order (``is_built``), so installing a plugin does not move
built environments to it; ``prefer_built=False`` (``nbcore install --rebuild``)
turns that off.

Protocols: ``NBCORE_PROTOCOL`` (alias ``NERFBASELINES_PROTOCOL``), else the
config file's ``protocol:``, else :func:`default_protocols` (the preferred
fallback, then every upgrade protocol, the most preferred last).  The first
entry is the fallback; the others are tried in reverse order after connecting.
"""
import os
from typing import List, Optional, Tuple

from ..log import log
from ..errors import BackendUnavailable, UserError
from ..plugin.protocol import FALLBACK, UPGRADE
from ..plugin.registry import missing_hint
from .interpreters import python_range_refused

#: Said of a backend chosen because it has a ready build of the spec.
KEPT_BUILD = "it has a ready build of this spec"


def _env_variable(name):
    """The variable that sets ``name``: ``NBCORE_<name>``, else its alias ``NERFBASELINES_<name>`` (None: neither)."""
    return next((v for v in ("NBCORE_" + name, "NERFBASELINES_" + name) if os.environ.get(v)), None)


def _env(name):
    variable = _env_variable(name)
    return os.environ[variable] if variable else None


def _unavailable(provider, env_for):
    """Why ``provider`` cannot run the environment (None when it can)."""
    reason = provider.check_available()
    if reason:
        return reason
    env = env_for(provider)
    return python_range_refused(provider, env.spec.python) or provider.check_spec(env)


def _summary(registry, env_for) -> str:
    parts = []
    for name, provider in sorted(registry.backends.items()):
        reason = _unavailable(provider, env_for)
        parts.append(name if reason is None else "%s (unavailable: %s)" % (name, reason))
    return "installed backends: " + ", ".join(parts) + _installable(registry)


def _others(registry, env_for, chosen) -> str:
    """The other installed backends that can run the environment (the message is about ``chosen``), else
    the known ones that are not installed and how to install them."""
    able = ["%s (--backend %s)" % (name, name) for name, provider in sorted(registry.backends.items())
            if name != chosen and _unavailable(provider, env_for) is None]
    if able:
        return "other installed backends that can run it: " + ", ".join(able)
    return "no other installed backend can run it" + _installable(registry)


def _installable(registry) -> str:
    missing = registry.absent("backend")
    return "; installable: " + ", ".join("%s (%s)" % (n, registry.hint(n)) for n in missing) if missing else ""


def choose_backend(registry, env_for, spec, requested=None, config_default=None, is_built=None, prefer_built=True):
    """Return ``(provider, how)``; ``env_for(provider)`` builds the Environment to check, ``is_built(provider)``
    says whether that backend has a ready build of the spec (None: nothing counts as built)."""
    choice, how = requested, "requested"
    variable = _env_variable("BACKEND")
    if not choice and variable:
        choice, how = os.environ[variable], "from " + variable
    if not choice and config_default:
        choice, how = config_default, "from the config file"
    if not choice:
        choice = required_backend(spec, registry)
        if choice:
            provider = registry.backends[choice]
            reason = _unavailable(provider, env_for)
            if reason:
                raise BackendUnavailable("the spec's %s: section runs it on the %s backend, which cannot run it: %s "
                                         "(to use another backend: --backend NAME, NBCORE_BACKEND or the spec's "
                                         "backends: [...])" % (choice, choice, reason))
            return provider, "the spec's %s: section" % choice
    if choice:
        provider = registry.backends.get(choice)
        if provider is None:
            raise BackendUnavailable("unknown backend %r%s; %s" % (choice, missing_hint(choice, registry), _summary(registry, env_for)))
        reason = _unavailable(provider, env_for)
        if reason:
            raise BackendUnavailable("backend %r cannot run this environment: %s; %s"
                                     % (choice, reason, _others(registry, env_for, choice)))
        return provider, how
    # The spec's backends: list decides alone while one of its backends is available, so the other backends'
    # plugins are imported only when none is (or when the spec has no list: a ready build elsewhere may count).
    order = list(dict.fromkeys(preferred_backends(spec, registry)))
    if not spec.backends:
        order = _with_automatic(order, registry)
    reasons = []
    index = _first_available(registry, env_for, order, 0, reasons)
    if index is None and spec.backends:
        tried, order = len(order), _with_automatic(order, registry)
        index = _first_available(registry, env_for, order, tried, reasons)
    if index is None:
        raise BackendUnavailable("no backend can run this environment (%s)%s" % ("; ".join(reasons),
                                                                                 _installable(registry)))
    return _keep_built(registry, env_for, spec, order, index, is_built if prefer_built else None)


def _first_available(registry, env_for, order, start, reasons) -> Optional[int]:
    """The index of the first backend of ``order[start:]`` that is installed and can run the environment, else
    None; why each one before it cannot is added to ``reasons``."""
    for index in range(start, len(order)):
        provider = registry.backends.get(order[index])
        if provider is None:
            reasons.append("%s: not installed%s" % (order[index], missing_hint(order[index], registry)))
            continue
        reason = _unavailable(provider, env_for)
        if reason is None:
            return index
        reasons.append("%s: %s" % (order[index], reason))
    return None


def _with_automatic(order, registry) -> List[str]:
    """``order``, then every other installed backend that automatic selection tries, by priority."""
    return list(dict.fromkeys(order + [b.name for b in registry.auto_backends()]))


def _keep_built(registry, env_for, spec, order, index, is_built):
    """``(provider, how)`` for automatic selection: ``order[index]`` (the first available backend), unless the spec has
    no ``backends:`` list and a later available backend of ``order`` already has a ready build of it."""
    first = registry.backends[order[index]]
    if spec.backends and first.name in spec.backends:
        listed = "the spec's backends: [%s]" % ", ".join(spec.backends)
    else:
        listed = ", ".join(order)
    first_choice = (first, "automatic: the first available of %s" % listed)
    if is_built is None or spec.backends or is_built(first):
        return first_choice
    for name in order[index + 1:]:
        provider = registry.backends.get(name)
        if provider is not None and is_built(provider) and _unavailable(provider, env_for) is None:
            return provider, ("automatic: %s (a new build would use %s; `nbcore install --rebuild` or "
                              "--backend %s moves it)" % (KEPT_BUILD, first.name, first.name))
    return first_choice


def required_backend(spec, registry) -> Optional[str]:
    """The backend ``spec`` must run on because it has that backend's section and the backend is
    :attr:`~nbcore.plugin.BackendProvider.required_by_section`; None when the spec lists ``backends:``
    (the user chose) or has no such section."""
    if spec.backends:
        return None
    required = [name for name in spec.sections
                if name in registry.backends and registry.backends[name].required_by_section]
    if len(required) > 1:
        raise UserError("the spec has sections of %s, each of which runs it on its own backend; pick one with "
                        "backends: [...] or --backend NAME" % " and ".join(required))
    return required[0] if required else None


def preferred_backends(spec, registry) -> List[str]:
    """The backends ``spec`` itself asks for: its ``backends:`` list, else the backend of its only section."""
    if spec.backends:
        return list(spec.backends)
    sections = [name for name in spec.sections if name in registry.backends or name in registry.absent("backend")]
    return sections if len(sections) == 1 else []


def default_protocols(registry) -> str:
    """The protocol list when nothing sets one: the preferred fallback, then the upgrade protocols by
    preference, the most preferred last (it is tried first)."""
    fallbacks = registry.fallback_protocols()
    upgrades = [p.name for p in reversed(registry.upgrade_protocols()) if fallbacks and p is not fallbacks[0]]
    return ",".join(([fallbacks[0].name] if fallbacks else []) + upgrades)


def protocol_list(registry, config_default: Optional[str] = None, explicit: Optional[str] = None) -> List[str]:
    """The protocol names in order, first = fallback."""
    raw = explicit or _env("PROTOCOL") or config_default or default_protocols(registry)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise UserError("the protocol list %r is empty; use e.g. %s" % (raw, default_protocols(registry)))
    return names


def plan_protocols(registry, names: List[str]) -> Tuple[object, List[Tuple[str, object]]]:
    """Return ``(fallback_provider, upgrade_candidates)``; skipped entries are logged with the reason."""
    fallback_name = names[0]
    fallback = registry.protocols.get(fallback_name)
    reason = None
    if fallback is None:
        reason = "unknown protocol%s" % missing_hint(fallback_name, registry)
    else:
        reason = fallback.check_available()
        if reason is None and FALLBACK not in fallback.roles:
            reason = "it cannot be a fallback (it needs an established connection)"
    if reason:
        usable = [p for p in registry.fallback_protocols() if p.check_available() is None]
        if not usable:
            raise UserError("protocol %s cannot be the fallback (%s) and no other fallback protocol is available"
                            % (fallback_name, reason))
        fallback = usable[0]
        log.warning("protocol %s cannot be the fallback: %s; using %s", fallback_name, reason, fallback.name)
        fallback_name = fallback.name
    candidates = []
    for name in reversed(names[1:]):
        if name == fallback_name or any(name == n for n, _ in candidates):
            continue
        provider = registry.protocols.get(name)
        if provider is None:
            log.info("protocol %s skipped: unknown protocol%s", name, missing_hint(name, registry))
            continue
        if UPGRADE not in provider.roles:
            log.info("protocol %s skipped: it cannot replace an established connection", name)
            continue
        reason = provider.check_available()
        if reason:
            log.info("protocol %s skipped: unavailable on the host: %s", name, reason)
            continue
        candidates.append((name, provider))
    return fallback, candidates
