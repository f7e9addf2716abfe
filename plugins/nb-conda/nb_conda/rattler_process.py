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
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import yaml

from rattler import (Channel, Gateway, LockChannel, LockFile, LockPlatform, PrefixRecord,
                     Subdir, VirtualPackage, install, solve)
from rattler.exceptions import SolverError
from rattler.install import InstallerReporter
from rattler.package_cache import PackageCache, ValidationMode
from rattler.shell import ActivationVariables, PathModificationBehavior, Shell, activate

from nb_conda import integrity


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


def _package_name(record):
    return "%s-%s-%s" % (record.name.normalized, record.version, record.build)


def _verify_local_sources(records, origin):
    """Hash every archive read from this machine against its record: rattler checks only what it downloads."""
    for record in records:
        name, path = _package_name(record), integrity.local_path(str(record.url))
        try:
            integrity.required_hash(name, origin, record.sha256, record.md5)
            if path is None:
                continue  # http(s): rattler checks the download
            if not os.path.isfile(path):
                raise Failure("%s: its archive %s does not exist (named by %s)" % (name, path, origin))
            integrity.check_file(name, path, origin, record.sha256, record.md5)
        except integrity.HashMismatch as exc:
            raise Failure(str(exc)) from None


def validated_package_cache(pkgs_dir):
    """The shared package cache, every reused package checked against its own ``info/paths.json`` (sha256 and
    size of each file): a file changed or removed in the cache makes rattler extract the package again."""
    return PackageCache.new_layered([Path(pkgs_dir)], validation_mode=ValidationMode.full())


def _cached_copies(records, pkgs_dir):
    """``{package: (inode of its cached info/index.json, archive sha256 the cache recorded)}`` for the packages the
    cache holds, to tell afterwards which ones rattler found damaged and extracted again."""
    copies = {}
    for record in records:
        entry = os.path.join(pkgs_dir, _package_name(record))
        try:
            with open(entry + ".lock", "rb") as f:
                recorded = f.read()[8:40]  # rattler's cache lock: an 8-byte revision, then the archive's sha256
            copies[_package_name(record)] = (os.stat(os.path.join(entry, "info", "index.json")).st_ino, recorded)
        except OSError:
            continue
    return copies


def _report_repairs(before, records, pkgs_dir):
    """One line per package whose cached copy was damaged (same archive, extracted again by the validation)."""
    for record in records:
        name = _package_name(record)
        if name not in before or before[name][1] != (record.sha256 or b""):
            continue
        try:
            inode = os.stat(os.path.join(pkgs_dir, name, "info", "index.json")).st_ino
        except OSError:
            continue
        if inode != before[name][0]:
            emit(line="the package cache's copy of %s was damaged (a file changed or went missing): extracted it "
                      "again" % name)


async def create(request):
    """Solve (or read the lock file), check the archives' hashes, then download into the shared cache (validating
    what it reuses) and link into the prefix."""
    if request.get("lock_file"):
        records = _locked_records(request["lock_file"])
        origin = "the lock file %s" % request["lock_file"]
        emit(step="installing %d packages from the lock file %s (no solve)" % (len(records), request["lock_file"]))
    else:
        records = await _solve(request)
        origin = "its channel's index"
    _verify_local_sources(records, origin)
    emit(step="downloading into %s and linking %d packages" % (request["pkgs_dir"], len(records)))
    prefix = request["prefix"]
    existed = os.path.lexists(prefix)
    cached = _cached_copies(records, request["pkgs_dir"])
    try:
        await install(records, target_prefix=prefix, package_cache=validated_package_cache(request["pkgs_dir"]),
                      reporter=Reporter(), show_progress=False)
    except Exception as exc:
        if not existed:
            shutil.rmtree(prefix, ignore_errors=True)
        message = _one_line(exc)
        raise Failure(integrity.download_mismatch(message, origin)
                      or "linking the conda packages failed: %s" % message) from None
    _report_repairs(cached, records, request["pkgs_dir"])
    return {"packages": sorted(_package_name(r) for r in records)}


def activation(request):
    """The bash script that activates the prefix (PATH, CONDA_PREFIX, recorded variables, activate.d)."""
    path = [p for p in request["path"].split(os.pathsep) if p]
    variables = ActivationVariables(None, path, PathModificationBehavior.Replace)
    return {"script": activate(Path(request["prefix"]), variables, Shell.bash).script}


def lock(request):
    """Write the prefix's conda packages (its conda-meta/ records: URLs and hashes) and the given pip
    packages (URLs and sha256) as a rattler lock file; every entry carries a sha256."""
    records = [PrefixRecord.from_path(p) for p in sorted(glob.glob(os.path.join(request["prefix"], "conda-meta", "*.json")))]
    if not records:
        raise Failure("%s holds no conda packages (conda-meta/ is empty)" % request["prefix"])
    platform = LockPlatform(str(Subdir.current()))
    lock_file = LockFile([platform])
    lock_file.set_channels("default", [LockChannel(c.base_url) for c in _channels(request)])
    for record in records:
        if record.sha256 is None:
            record.sha256 = bytes.fromhex(_cached_archive_sha256(record, request["pkgs_dir"]))
        lock_file.add_conda_package("default", platform, record)
    for package in request["pip"]:
        lock_file.add_pypi_package("default", platform, package["name"], package["version"], package["url"])
    lock_file.to_path(request["path"])
    _write_pip_hashes(request["path"], {_pip_key(p["name"]): p["sha256"] for p in request["pip"]})
    return {"packages": len(records) + len(request["pip"])}


def _cached_archive_sha256(record, pkgs_dir):
    """The sha256 of a package whose conda-meta record has none (a frontend that keeps only md5), from its archive
    in the package cache, checked against the record's md5."""
    archive = os.path.join(pkgs_dir, record.file_name)
    if not os.path.isfile(archive):
        raise Failure("cannot lock %s: its conda-meta record has no sha256 and its archive %s is not in the package "
                      "cache (CONDA_PKGS_DIRS)" % (_package_name(record), archive))
    try:
        integrity.check_file(_package_name(record), archive, "its conda-meta record", None, record.md5)
    except integrity.HashMismatch as exc:
        raise Failure("cannot lock %s" % exc) from None
    return integrity.file_digest(archive)


def _write_pip_hashes(path, hashes):
    """Give every pip package of the lock file ``path`` its ``sha256`` field, as pixi writes them (py-rattler's
    ``add_pypi_package`` takes none, and a ``#sha256=`` fragment of a file URL is lost when the lock is read)."""
    if not hashes:
        return
    with open(path) as f:
        data = yaml.safe_load(f)
    for package in data["packages"]:
        if "pypi" in package:
            package["sha256"] = hashes[_pip_key(package["name"])]
    with open(path + ".tmp", "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(path + ".tmp", path)


def _pip_key(name):
    """A pip package name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked_pip(package, origin):
    """A lock file's pip package as pip must install it: ``{name, url, sha256}``, its archive checked when local."""
    location = package.location
    try:
        sha256 = package.hashes.sha256
    except AttributeError:  # the entry has no hash field
        sha256 = None
    if sha256 is None and "#sha256=" in location:  # locks written before the sha256 field (https URLs keep it)
        location, sha256 = location.split("#sha256=", 1)
    name = "%s-%s" % (package.name, package.version)
    try:
        _, sha256 = integrity.required_hash(name, origin, sha256, None)
        path = integrity.local_path(location)
        if path is not None:
            integrity.check_file(name, path, origin, sha256, None)
            location = Path(path).absolute().as_uri()
    except integrity.HashMismatch as exc:
        raise Failure(str(exc)) from None
    return {"name": package.name, "url": location, "sha256": sha256}


def read_lock(request):
    """A lock file's packages: pip ones (URL and sha256, local archives checked) and, when ``conda`` is asked, conda
    ``URL#md5`` (an ``@EXPLICIT`` list for a frontend; local archives checked)."""
    environment, platform = _locked_environment(request["lock_file"])
    origin = "the lock file %s" % request["lock_file"]
    result = {"pip": [_locked_pip(p, origin) for p in environment.pypi_packages_for_platform(platform) or ()]}
    if request.get("conda"):
        records = _locked_records(request["lock_file"])
        _verify_local_sources(records, origin)
        result["conda"] = ["%s#%s" % (r.url, r.md5.hex() if isinstance(r.md5, bytes) else r.md5) for r in records]
    return result


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
