"""``nbcore gc``: remove environments that no given config refers to."""
import contextlib
import os
import shutil
from pathlib import Path

from ..host.config import find_config_file, load_config
from ..errors import UserError
from ..home import nbcore_home
from ..plugin.registry import get_registry
from ..host.store import env_folder, environment_from_record, list_environments


@contextlib.contextmanager
def _unless_installing(folder: Path):
    """Yield True holding ``folder``'s install lock, or False when another process is installing it."""
    import filelock

    lock = filelock.FileLock(str(folder) + ".lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def collect_garbage(config_path=None, dry_run=False):
    """Remove (or list, with ``dry_run``) environments the config does not define; return their records.

    Environments being installed by another process right now are left alone.
    """
    registry = get_registry()
    path = find_config_file(config_path)
    if path is None:
        raise UserError("nbcore gc keeps the environments of a config: pass -c FILE (or set NBCORE_CONFIG)")
    config = load_config(path, registry.backends)
    home = nbcore_home()
    wanted = {str(env_folder(home, backend, name, spec.identity(backend)))
              for name, spec in config.environments.items() for backend in registry.backends}
    removed = []
    for record in list_environments(home):
        if record["ready"] and record["path"] in wanted:
            continue
        with _unless_installing(Path(record["path"])) as free:
            if not free:
                continue
            removed.append(record)
            if dry_run:
                continue
            provider = registry.backends.get(record["backend"])
            if provider is not None and record["hash"]:
                provider.remove(environment_from_record(record))
            shutil.rmtree(record["path"], ignore_errors=True)
            os.unlink(record["path"] + ".lock")
    return removed
