"""Staging the worker-side code: a folder that goes on the worker's ``PYTHONPATH``, or the same files as an archive.

It holds ``nbcore/worker/`` and each protocol plugin's worker module at the same
dotted names they have on the host (parent packages become empty stubs), so
the environment needs no nbcore install.  The ``nbcore`` stub alone is not
empty: it lets Python cache the bytecode of the worker's own modules in the
staged folder even where ``PYTHONDONTWRITEBYTECODE`` (or ``-B``) is set, so a
worker does not compile them again at every start; the worker restores the
user's setting once its protocol modules are imported, before any user code
(:func:`nbcore.worker.serve.main`).

The files are content-addressed: :func:`stage_worker` writes them under
``NBCORE_HOME/worker/<first 16 hex digits>/`` of the sha256 of their paths,
sizes and contents, with a stamp file holding the whole hash, every file
``0644`` and every folder ``0755`` whatever the umask.  For launchers that ship
them to another machine, :func:`worker_archive` packs the same files into a
deterministic tar whose sha256 names them there.
Before a folder is reused its stamp, the contents and modes of its files and
the owner of everything in it are checked; a folder that fails is rebuilt
beside it and swapped in (:func:`nbcore.plugin.staging.stage_files`).
"""
import hashlib
import importlib.util
import io
from pathlib import Path
from typing import Dict, Iterable, Tuple

from ..plugin.staging import FILE_MODE, FOLDER_MODE, folders_of, stage_files
from ..worker.serve import BYTECODE_VARIABLE

#: The staged ``nbcore/__init__.py``: bytecode of the worker's own modules is cached whatever the user's setting,
#: in the folder of :data:`~nbcore.worker.serve.BYTECODE_VARIABLE` when the backend gives one (a read-only mount).
NBCORE_STUB = ("""import os
import sys

sys.dont_write_bytecode = False  # nbcore.worker.serve.main() restores the settings
USER_PYCACHE_PREFIX = getattr(sys, "pycache_prefix", None)
if os.environ.get("%s") and hasattr(sys, "pycache_prefix"):
    sys.pycache_prefix = os.environ["%s"]
""" % (BYTECODE_VARIABLE, BYTECODE_VARIABLE)).encode()


def _module_files(module_name: str) -> Dict[str, Path]:
    """Map relative target paths to source files for one module or package."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None:
        raise ImportError("worker module %s not found" % module_name)
    parts = module_name.split(".")
    files = {}
    if spec.submodule_search_locations:
        package_dir = Path(spec.origin).parent
        for source in sorted(package_dir.glob("*.py")):
            files["/".join(parts + [source.name])] = source
    else:
        files["/".join(parts[:-1] + [parts[-1] + ".py"])] = Path(spec.origin)
    return files


def worker_files(worker_modules: Iterable[str]) -> Dict[str, bytes]:
    """The worker code of ``nbcore.worker`` and ``worker_modules``: relative path -> content."""
    sources = {}
    for module_name in ["nbcore.worker"] + sorted(set(worker_modules)):
        sources.update(_module_files(module_name))
    files = {target: source.read_bytes() for target, source in sources.items()}
    files["nbcore/__init__.py"] = NBCORE_STUB
    for target in list(files):
        parts = target.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            files.setdefault("/".join(parts[:i] + ["__init__.py"]), b"")
    return dict(sorted(files.items()))


def _archive(files: Dict[str, bytes]) -> bytes:
    """A tar of ``files`` that depends on nothing else: fixed order, modes, owners and times."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in folders_of(files):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, FOLDER_MODE
            tar.addfile(info)
        for target, data in files.items():
            info = tarfile.TarInfo(target)
            info.size, info.mode = len(data), FILE_MODE
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _digest(files: Dict[str, bytes]) -> str:
    """The sha256 of ``files``' paths, sizes and contents."""
    digest = hashlib.sha256()
    for target, data in files.items():
        digest.update(b"%s\0%d\0" % (target.encode(), len(data)) + data)
    return digest.hexdigest()


def worker_archive(worker_modules: Iterable[str]) -> Tuple[bytes, str]:
    """The worker code as ``(tar bytes, sha256 hex)``; equal code gives equal bytes."""
    data = _archive(worker_files(worker_modules))
    return data, hashlib.sha256(data).hexdigest()


def stage_worker(home: Path, worker_modules: Iterable[str]) -> Path:
    """Return a folder holding ``nbcore.worker`` and ``worker_modules``, ready for PYTHONPATH."""
    files = worker_files(worker_modules)
    digest = _digest(files)
    return stage_files(home / "worker" / digest[:16], files, digest)


