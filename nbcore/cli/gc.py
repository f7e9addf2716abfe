"""``nbcore gc``: remove the environments the given configs made obsolete (and, on request, more).

By default only what is certainly garbage goes: unfinished folders that no process is installing,
and older builds of the configs' own environments (same project, backend and name, another spec).
Environments of other projects sharing the cache stay unless ``unreferenced`` or ``older_than_days``
asks for them.
"""
import shutil
import time
from pathlib import Path
from typing import List, Optional, Sequence

from ..host.config import find_config_file, load_config
from ..errors import UserError
from ..home import nbcore_home
from ..plugin.registry import get_registry
from ..plugin.store import (environment_from_record, folder_bytes, install_lock, list_environments, projects_of,
                          read_record)

DAY = 86400.0


def collect_garbage(config_paths: Sequence = (), unreferenced=False, older_than_days: Optional[float] = None,
                    dry_run=False) -> List[dict]:
    """Remove (or only list, with ``dry_run``) environments; return their records with ``reason`` and ``bytes``.

    ``unreferenced`` also removes every environment no given config describes; ``older_than_days``
    also removes every one not opened for that many days.  Folders being installed are left alone.
    Then each backend removes what it keeps besides environments (:meth:`BackendProvider.collect_garbage`).
    """
    registry = get_registry()
    paths = list(config_paths) or [p for p in [find_config_file()] if p is not None]
    if not paths and older_than_days is None:
        raise UserError("nbcore gc keeps the environments of a config: pass -c FILE (or set NBCORE_CONFIG), "
                        "or --older-than DAYS to remove environments not used for that long")
    if older_than_days is not None and older_than_days < 0:
        raise UserError("--older-than takes a number of days >= 0, not %g" % older_than_days)
    configs = [load_config(path, registry.backends) for path in paths]
    if unreferenced and not configs:
        raise UserError("--unreferenced needs the configs whose environments stay: pass -c FILE (repeatable)")
    now = time.time()
    removed = []
    for listed in list_environments(nbcore_home(), sizes=False):
        folder = Path(listed["path"])
        with install_lock(folder) as free:
            if not free:
                continue
            record = _current(listed, folder)
            reason = _reason(registry, record, configs, unreferenced, older_than_days, now)
            if reason is None:
                continue
            record.update(reason=reason, bytes=folder_bytes(folder))
            removed.append(record)
            if not dry_run:
                _remove(registry, record)
    for provider in registry.backends.values():
        removed += provider.collect_garbage(unreferenced, older_than_days, dry_run)
    return removed


def _current(listed: dict, folder: Path) -> dict:
    """``listed`` as it is now that the lock is held (an install may have finished meanwhile)."""
    record = dict(listed)
    marker = read_record(folder, warn=False)
    if marker is not None:
        record.update(marker)
    record["ready"] = marker is not None
    return record


def _reason(registry, record, configs, unreferenced, older_than_days, now) -> Optional[str]:
    """Why ``record``'s environment is garbage, or None to keep it."""
    if not record["ready"]:
        return "unfinished"
    name, backend, spec_hash = record["name"], record["backend"], record["hash"]
    specs = [c.environments[name] for c in configs if name in c.environments]
    provider = registry.backends.get(backend)
    described = any(spec.identity(backend, provider.identity(spec) if provider else None) == spec_hash
                    for spec in specs)
    users = projects_of(record)
    if not described and users and set(users) <= {spec.base_dir for spec in specs}:
        return "superseded"  # only the given configs' projects use it, and none of them describes it any more
    if unreferenced and not described:
        return "unreferenced"
    used = record.get("used") or record.get("created")
    if older_than_days is not None and used is not None and now - used > older_than_days * DAY:
        return "unused for %d days" % ((now - used) // DAY)
    return None


def _remove(registry, record) -> None:
    """Delete the environment and what its backend keeps for it; the lock file stays (see nbcore.plugin.store)."""
    provider = registry.backends.get(record["backend"])
    if provider is not None and record["hash"]:
        provider.remove(environment_from_record(record))
    shutil.rmtree(record["path"], ignore_errors=True)


def format_bytes(size: int) -> str:
    """``size`` for people: ``512 B``, ``12.3 MB``, ``1.2 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1000.0
