"""The embedded engine's own process: py-rattler solves, downloads, links, activates and locks.

Run as ``python -m nb_conda.rattler_process`` by :mod:`nb_conda.embedded`, one
request per process: a JSON object on stdin, JSON event lines on stdout
(``{"step": ...}``, ``{"line": ...}``, then ``{"result": ...}`` or
``{"error": ...}``).  A process of its own because py-rattler runs
an async runtime with threads of its own: the host's event loop (a notebook's)
stays untouched, a stuck solve can be killed, and the process ends with
``os._exit`` once it has answered, never racing those threads at interpreter
shutdown.  It also ends when its parent dies, so a killed installer leaves no
engine writing into a prefix that the next installer removes.
"""
import asyncio
import datetime
import glob
import json
import os
import sys
import threading
import time
from pathlib import Path

from rattler import (Channel, Gateway, LockChannel, LockFile, LockPlatform, PrefixRecord,
                     Subdir, VirtualPackage, install, solve)
from rattler.exceptions import SolverError
from rattler.install import InstallerReporter
from rattler.shell import ActivationVariables, PathModificationBehavior, Shell, activate


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Failure(Exception):
    """A failure whose message is the one line the user gets."""


def _one_line(text):
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


class Reporter(InstallerReporter):
    """Turns rattler's install callbacks into progress lines (one per downloaded and linked package)."""

    def __init__(self):
        self.names = {}

    def on_transaction_start(self, total_operations):
        emit(line="%d package operations" % total_operations)

    def on_populate_cache_start(self, operation, package_name):
        self.names[operation] = package_name
        return operation

    def on_download_start(self, cache_entry):
        emit(line="downloading %s" % self.names.get(cache_entry, "?"))
        return cache_entry

    def on_download_completed(self, download_idx):
        emit(line="downloaded %s" % self.names.get(download_idx, "?"))

    def on_link_start(self, operation, package_name):
        emit(line="linking %s" % package_name)
        return operation


def _channels(request):
    return [Channel(name) for name in request["channels"]]


def _platforms():
    return [Subdir.current(), Subdir("noarch")]


async def _solve(request):
    channels = _channels(request)
    emit(step="solving %s from %s" % (", ".join(request["specs"]), ", ".join(c.base_url for c in channels)))
    started = time.monotonic()
    try:
        records = await solve(
            sources=channels, specs=request["specs"], platforms=_platforms(),
            gateway=Gateway(cache_dir=request["repodata_dir"]),
            virtual_packages=VirtualPackage.detect(),
            timeout=datetime.timedelta(seconds=request["timeout"]),
        )
    except SolverError as exc:
        message = _one_line(exc)
        if "cancelled" in message:
            raise Failure("the conda solve did not finish within %g s (NBCORE_CONDA_SOLVE_TIMEOUT)"
                          % request["timeout"]) from None
        message = message.replace("Cannot solve the request because of: ", "")
        raise Failure("the conda solve failed: %s (channels: %s)"
                      % (message.rstrip("."), ", ".join(request["channels"]))) from None
    except Exception as exc:  # repodata that cannot be fetched, a bad channel URL
        raise Failure("the conda solve failed: %s" % _one_line(exc)) from None
    emit(step="solved %d packages in %.2f s" % (len(records), time.monotonic() - started))
    return records


def _locked_environment(path):
    """The default environment of a lock file and this platform's entry in it."""
    try:
        lock = LockFile.from_path(path)
    except Exception as exc:
        raise Failure("cannot read the lock file %s: %s" % (path, _one_line(exc))) from None
    current = str(Subdir.current())
    platform = next((p for p in lock.platforms() if p.name == current), None)
    environment = lock.default_environment()
    if environment is None or platform is None:
        raise Failure("the lock file %s has no packages for %s (write it with `nbcore lock` on this platform)"
                      % (path, current))
    return environment, platform


def _locked_records(path):
    environment, platform = _locked_environment(path)
    records = environment.conda_repodata_records_for_platform(platform)
    if not records:
        raise Failure("the lock file %s has no conda packages for %s" % (path, platform.name))
    return records


async def create(request):
    """Solve (or read the lock file), then download into the shared cache and link into the prefix."""
    if request.get("lock_file"):
        records = _locked_records(request["lock_file"])
        emit(step="installing %d packages from the lock file %s (no solve)" % (len(records), request["lock_file"]))
    else:
        records = await _solve(request)
    emit(step="downloading into %s and linking %d packages" % (request["pkgs_dir"], len(records)))
    try:
        await install(records, target_prefix=request["prefix"], cache_dir=Path(request["pkgs_dir"]),
                      reporter=Reporter(), show_progress=False)
    except Exception as exc:
        raise Failure("linking the conda packages failed: %s" % _one_line(exc)) from None
    return {"packages": sorted("%s-%s-%s" % (r.name.normalized, r.version, r.build) for r in records)}


def activation(request):
    """The bash script that activates the prefix (PATH, CONDA_PREFIX, recorded variables, activate.d)."""
    path = [p for p in request["path"].split(os.pathsep) if p]
    variables = ActivationVariables(None, path, PathModificationBehavior.Replace)
    return {"script": activate(Path(request["prefix"]), variables, Shell.bash).script}


def lock(request):
    """Write the prefix's conda packages (its conda-meta/ records: URLs and hashes) and the given pip
    packages as a rattler lock file."""
    records = [PrefixRecord.from_path(p) for p in sorted(glob.glob(os.path.join(request["prefix"], "conda-meta", "*.json")))]
    if not records:
        raise Failure("%s holds no conda packages (conda-meta/ is empty)" % request["prefix"])
    platform = LockPlatform(str(Subdir.current()))
    lock_file = LockFile([platform])
    lock_file.set_channels("default", [LockChannel(c.base_url) for c in _channels(request)])
    for record in records:
        lock_file.add_conda_package("default", platform, record)
    for package in request["pip"]:
        lock_file.add_pypi_package("default", platform, package["name"], package["version"], package["url"])
    lock_file.to_path(request["path"])
    return {"packages": len(records) + len(request["pip"])}


def read_lock(request):
    """A lock file's packages for a frontend and for pip: conda ``URL#md5`` (an ``@EXPLICIT`` list) and pip locations."""
    environment, platform = _locked_environment(request["lock_file"])
    return {"conda": ["%s#%s" % (r.url, r.md5.hex() if isinstance(r.md5, bytes) else r.md5)
                      for r in _locked_records(request["lock_file"])],
            "pip": [p.location for p in environment.pypi_packages_for_platform(platform) or ()]}


OPERATIONS = {"create": create, "activation": activation, "lock": lock, "read_lock": read_lock}


def _exit_with_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:
            os._exit(3)


def main():
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    code = 0
    try:
        request = json.loads(sys.stdin.read())
        result = OPERATIONS[request["op"]](request)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        emit(result=result)
    except Failure as exc:
        emit(error=str(exc))
        code = 1
    except Exception as exc:
        emit(error="the conda engine failed: %s: %s" % (type(exc).__name__, _one_line(exc)))
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
