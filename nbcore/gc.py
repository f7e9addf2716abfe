"""``nbcore gc``: remove environments that no given config refers to."""
import shutil

from .config import find_config_file, load_config
from .errors import UserError
from .home import nbcore_home
from .plugins import get_registry
from .store import environment_from_record, list_environments


def collect_garbage(config_path=None, dry_run=False):
    """Remove (or list, with ``dry_run``) environments the config does not define; return their records."""
    registry = get_registry()
    path = find_config_file(config_path)
    if path is None:
        raise UserError("nbcore gc keeps the environments of a config: pass -c FILE (or set NBCORE_CONFIG)")
    config = load_config(path, registry.backends)
    wanted = {(backend, spec.identity(backend)) for spec in config.environments.values() for backend in registry.backends}
    removed = []
    for record in list_environments(nbcore_home()):
        if record["ready"] and (record["backend"], record["hash"]) in wanted:
            continue
        removed.append(record)
        if dry_run:
            continue
        provider = registry.backends.get(record["backend"])
        if provider is not None and record["hash"]:
            provider.remove(environment_from_record(record))
        shutil.rmtree(record["path"], ignore_errors=True)
    return removed
