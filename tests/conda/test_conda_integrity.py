"""Nothing installed or reused unchecked: lock file hashes and the shared package cache, on real conda prefixes.

A lock file is written by ``nbcore lock`` from an environment the embedded engine built
from the local channel; the attacks rewrite it (a package pointing at a modified archive,
zeroed or missing hashes) or damage the package cache between two installs.  The modified
package's activate.d script touches a marker file: it must never run.
"""
import functools
import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
import yaml

from nbtest import run_nbcore, write

pytestmark = pytest.mark.conda

ACTIVATION_PACKAGE = "nbtest-activation-1.0-0.tar.bz2"
ACTIVATION_SCRIPT = "etc/conda/activate.d/nbtest-activation.sh"


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tampered_copy(original: Path, target: Path, marker: Path) -> Path:
    """``original`` (a .tar.bz2 conda package) with its activate.d script also touching ``marker``; its own
    ``info/paths.json`` updated to match, as an attacker would."""
    payload = ("touch %s\n" % marker).encode()
    members = []
    with tarfile.open(original, "r:bz2") as source:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None
            members.append((member, data))
    scripts = {ACTIVATION_SCRIPT: None}
    for member, data in members:
        if member.name == ACTIVATION_SCRIPT:
            scripts[ACTIVATION_SCRIPT] = payload + data
    for member, data in members:
        if member.name == "info/paths.json":
            paths = json.loads(data)
            for entry in paths["paths"]:
                if entry["_path"] in scripts:
                    entry["sha256"] = hashlib.sha256(scripts[entry["_path"]]).hexdigest()
                    entry["size_in_bytes"] = len(scripts[entry["_path"]])
            scripts["info/paths.json"] = json.dumps(paths).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:bz2") as tar:
        for member, data in members:
            if member.name in scripts:
                data = scripts[member.name]
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return target


@pytest.fixture(scope="module")
def locked_source(tmp_path_factory, conda_channels, build_wheel):
    """A lock file that ``nbcore lock`` wrote for python + nbtest-activation + a pip wheel: (folder, lock text)."""
    folder = tmp_path_factory.mktemp("conda-lock-source")
    build_wheel(folder / "wheels", "nbtest_locked", "1.0", "VALUE = 'locked'\n")
    write(folder / "nbcore.yaml", """
        environments:
          cd-lock-source:
            python: "3.11"
            conda:
              dependencies: [nbtest-activation]
              pip: [./wheels/nbtest_locked-1.0-py3-none-any.whl]
    """)
    result = run_nbcore("lock", "cd-lock-source", "--backend", "conda", "-o", folder / "source.lock", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder, (folder / "source.lock").read_text()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty package cache for this test (so a lock's sources are read, not a warm cache's copies)."""
    monkeypatch.setenv("CONDA_PKGS_DIRS", str(tmp_path / "pkgs"))
    return tmp_path / "pkgs"


class ChannelServer:
    """A plain HTTP server on loopback over ``folder`` (for http(s) lock entries)."""

    def __init__(self, folder: Path):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.server.server_address[1], name)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_folder(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    server = ChannelServer(folder)
    yield folder, server
    server.close()


def activation_location(lock_text: str) -> str:
    """Where the lock says nbtest-activation comes from (as written: a path for a local channel)."""
    data = yaml.safe_load(lock_text)
    return next(p["conda"] for p in data["packages"] if str(p.get("conda", "")).endswith(ACTIVATION_PACKAGE))


def rewritten(lock_text: str, location: str, sha256=None, md5=None, drop_hashes=False) -> str:
    """The lock with nbtest-activation's location (and, when given, its hashes) replaced."""
    data = yaml.safe_load(lock_text)
    old = activation_location(lock_text)
    for entries in data["environments"]["default"]["packages"].values():
        for entry in entries:
            if entry.get("conda") == old:
                entry["conda"] = location
    for package in data["packages"]:
        if package.get("conda") == old:
            package["conda"] = location
            if drop_hashes:
                package.pop("sha256", None)
                package.pop("md5", None)
            if sha256:
                package["sha256"] = sha256
            if md5:
                package["md5"] = md5
    return yaml.safe_dump(data, sort_keys=False)


def install_locked(folder: Path, lock_text: str, name: str):
    write(folder / "locked.lock", lock_text)
    write(folder / "nbcore.yaml", """
        environments:
          %s:
            conda: {lock_file: locked.lock}
    """ % name)
    return run_nbcore("install", name, "--backend", "conda", cwd=folder)


def assert_refused(result, nbcore_home, name, expected, actual):
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("nbcore: error:")]
    assert len(errors) == 1, result.stderr
    error = errors[0]
    assert "nbtest-activation" in error and expected in error and actual in error, error
    assert result.stderr.rstrip().endswith(error), "the error is one line, the last: %s" % result.stderr
    assert not list((Path(nbcore_home) / "envs" / "conda").glob(name + "-*/prefix")), "a prefix was left behind"


@pytest.mark.parametrize("source", ["path", "file-url", "http"])
def test_lock_entry_pointing_at_a_modified_package_is_refused(source, locked_source, tmp_path, fresh_cache,
                                                              http_folder, nbcore_home):
    _, lock_text = locked_source
    original = Path(activation_location(lock_text))
    marker = tmp_path / "activation-ran"
    served, server = http_folder
    evil = tampered_copy(original, (served if source == "http" else tmp_path / "evil") / ACTIVATION_PACKAGE, marker)
    location = {"path": str(evil), "file-url": evil.as_uri(), "http": server.url(ACTIVATION_PACKAGE)}[source]
    name = "cd-tampered-" + source
    result = install_locked(tmp_path, rewritten(lock_text, location), name)
    assert_refused(result, nbcore_home, name, sha256_of(original), sha256_of(evil))
    assert not marker.exists(), "the modified package's activation script ran"


@pytest.mark.parametrize("source", ["path", "http"])
def test_lock_entry_with_zeroed_hashes_is_refused(source, locked_source, tmp_path, fresh_cache, http_folder,
                                                  nbcore_home):
    _, lock_text = locked_source
    original = Path(activation_location(lock_text))
    marker = tmp_path / "activation-ran"
    served, server = http_folder
    evil = tampered_copy(original, (served if source == "http" else tmp_path / "evil") / ACTIVATION_PACKAGE, marker)
    location = str(evil) if source == "path" else server.url(ACTIVATION_PACKAGE)
    name = "cd-zeroed-" + source
    result = install_locked(tmp_path, rewritten(lock_text, location, sha256="0" * 64, md5="0" * 32), name)
    assert_refused(result, nbcore_home, name, "0" * 64, sha256_of(evil))
    assert not marker.exists(), "the modified package's activation script ran"


def test_lock_entry_with_only_md5_is_checked_against_md5(locked_source, tmp_path, fresh_cache, nbcore_home):
    _, lock_text = locked_source
    original = Path(activation_location(lock_text))
    marker = tmp_path / "activation-ran"
    evil = tampered_copy(original, tmp_path / "evil" / ACTIVATION_PACKAGE, marker)
    real_md5 = hashlib.md5(original.read_bytes()).hexdigest()
    text = rewritten(lock_text, str(evil), drop_hashes=True, md5=real_md5)
    result = install_locked(tmp_path, text, "cd-md5-only")
    assert_refused(result, nbcore_home, "cd-md5-only", real_md5, hashlib.md5(evil.read_bytes()).hexdigest())
    assert not marker.exists()


def test_lock_entry_without_any_hash_is_refused(locked_source, tmp_path, fresh_cache, nbcore_home):
    _, lock_text = locked_source
    text = rewritten(lock_text, activation_location(lock_text), drop_hashes=True)
    result = install_locked(tmp_path, text, "cd-no-hash")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("nbcore: error:")]
    assert len(errors) == 1 and "nbtest-activation" in errors[0] and "no sha256" in errors[0], result.stderr


def test_intact_lock_still_installs_from_a_file_url(locked_source, tmp_path, fresh_cache):
    _, lock_text = locked_source
    original = Path(activation_location(lock_text))
    result = install_locked(tmp_path, rewritten(lock_text, original.as_uri()), "cd-intact")
    assert result.returncode == 0, result.stderr


def test_lock_writes_sha256_for_every_conda_and_pip_entry(locked_source):
    folder, lock_text = locked_source
    packages = yaml.safe_load(lock_text)["packages"]
    assert sorted(p.get("conda", p.get("pypi", "?")).rsplit("/", 1)[-1].split("-")[0] for p in packages) == \
        ["nbtest", "nbtest_locked", "pip", "python"], packages
    for package in packages:
        assert len(str(package.get("sha256", ""))) == 64, package
    wheel = next(p for p in packages if "pypi" in p)
    assert wheel["sha256"] == sha256_of(folder / "wheels" / "nbtest_locked-1.0-py3-none-any.whl")


def test_locked_pip_wheel_that_changed_is_refused(locked_source, tmp_path, fresh_cache, nbcore_home, build_wheel):
    folder, lock_text = locked_source
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "nbtest_locked", "1.0", "VALUE = 'modified'\n")
    wheel = wheels / "nbtest_locked-1.0-py3-none-any.whl"
    original = folder / "wheels" / wheel.name
    text = lock_text.replace(original.as_uri(), wheel.as_uri()).replace(str(original), str(wheel))
    assert wheel.name in text and str(original) not in text
    result = install_locked(tmp_path, text, "cd-pip-tampered")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("nbcore: error:")]
    assert len(errors) == 1, result.stderr
    assert "nbtest_locked" in errors[0] and sha256_of(original) in errors[0] and sha256_of(wheel) in errors[0]


# The shared package cache


def cached_entry(pkgs: Path, package: str) -> Path:
    entries = [p for p in pkgs.glob(package + "-*") if p.is_dir()]
    assert len(entries) == 1, list(pkgs.iterdir())
    return entries[0]


@pytest.fixture
def cache_project(tmp_path, fresh_cache, conda_channels):
    """Two environments with the same conda packages, built one after the other on one package cache (new ones
    for each test: the case's folder is part of their spec)."""
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-cache-first:
            python: "3.11"
            conda: {dependencies: [nbtest-activation], variables: {CASE: "%s"}}
          cd-cache-second:
            python: "3.11"
            conda: {dependencies: [nbtest-activation], variables: {CASE: "%s", SECOND: "yes"}}
    """ % (tmp_path, tmp_path))
    result = run_nbcore("install", "cd-cache-first", "--backend", "conda", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path, fresh_cache


def prefix_of(nbcore_home, name, folder) -> Path:
    """The prefix of the environment ``name`` that the test in ``folder`` built."""
    prefixes = [p for p in (Path(nbcore_home) / "envs" / "conda").glob(name + "-*/prefix")
                if str(folder) in (p / "conda-meta" / "state").read_text()]
    assert len(prefixes) == 1, prefixes
    return prefixes[0]


def test_file_modified_in_the_package_cache_is_not_copied(cache_project, nbcore_home):
    folder, pkgs = cache_project
    marker = folder / "activation-ran"
    script = cached_entry(pkgs, "nbtest-activation") / ACTIVATION_SCRIPT
    original = script.read_text()
    script.unlink()  # a hard link into the first prefix: write a new file, as an attacker would
    script.write_text("touch %s\n%s" % (marker, original))
    result = run_nbcore("install", "cd-cache-second", "--backend", "conda", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "the modified cached activation script ran"
    assert (prefix_of(nbcore_home, "cd-cache-second", folder) / ACTIVATION_SCRIPT).read_text() == original
    assert script.read_text() == original, "the damaged cache entry was not repaired"
    assert "the package cache's copy of nbtest-activation-1.0-0 was damaged" in result.stderr, result.stderr


def test_file_deleted_from_the_package_cache_is_restored(cache_project, nbcore_home):
    folder, pkgs = cache_project
    deleted = cached_entry(pkgs, "python") / "lib" / "python3.11" / "json" / "decoder.py"
    deleted.unlink()
    result = run_nbcore("install", "cd-cache-second", "--backend", "conda", cwd=folder)
    assert result.returncode == 0, result.stderr
    prefix = prefix_of(nbcore_home, "cd-cache-second", folder)
    assert (prefix / "lib" / "python3.11" / "json" / "decoder.py").is_file()
    assert deleted.is_file(), "the damaged cache entry was not repaired"
    assert "the package cache's copy of python-3.11" in result.stderr, result.stderr
