"""Staging the worker-side code: a folder that goes on the worker's ``PYTHONPATH``.

It holds ``nbcore/worker/`` and each protocol plugin's worker module at the same
dotted names they have on the host (parent packages become empty stubs), so
the environment needs no nbcore install.  Folders are content-addressed under
``NBCORE_HOME/worker/`` and reused.
"""
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable


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


def stage_worker(home: Path, worker_modules: Iterable[str]) -> Path:
    """Return a folder holding ``nbcore.worker`` and ``worker_modules``, ready for PYTHONPATH."""
    files = {}
    for module_name in ["nbcore.worker"] + sorted(set(worker_modules)):
        files.update(_module_files(module_name))
    stubs = set()
    for target in files:
        parts = target.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            stub = "/".join(parts[:i] + ["__init__.py"])
            if stub not in files:
                stubs.add(stub)
    digest = hashlib.sha256()
    contents = {}
    for target in sorted(files):
        contents[target] = files[target].read_bytes()
        digest.update(target.encode() + b"\0" + contents[target] + b"\0")
    for stub in sorted(stubs):
        digest.update(stub.encode() + b"\0stub\0")
    folder = home / "worker" / digest.hexdigest()[:16]
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        for target, data in contents.items():
            (tmp / target).parent.mkdir(parents=True, exist_ok=True)
            (tmp / target).write_bytes(data)
        for stub in stubs:
            (tmp / stub).parent.mkdir(parents=True, exist_ok=True)
            (tmp / stub).write_text("")
        os.chmod(tmp, 0o755)
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not folder.is_dir():
            raise
    return folder
