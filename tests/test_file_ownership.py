"""Files another user could have written are never trusted: the config cache, ready markers, environment folders.

Run as root, the tests give files to another uid (65534, ``nobody``) the way a
second user on the machine would own them.
"""
import contextlib
import json
import logging
import os
import stat

import pytest

from nbcore.host import config_cache
from nbcore.plugin.store import READY_MARKER, ensure_installed, is_ready, make_environment
from nbcore.spec import EnvironmentSpec

from nbtest import run_nbcore, write
from test_store import CountingBackend, QuietProgress

pytestmark = pytest.mark.usefixtures("clean_env")

OTHER_UID = 65534


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")


@contextlib.contextmanager
def umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_config_cache_is_private_whatever_the_umask(home):
    key = config_cache.cache_key("environments: {}\n")
    with umask(0):
        config_cache.CACHE.store(key, {"environments": {}})
    entry = home / "config-cache" / (key + ".json")
    assert mode(home / "config-cache") == 0o700 and mode(entry) == 0o600
    assert config_cache.CACHE.load(key) == {"environments": {}}


@pytest.mark.parametrize("damage", ["other owner", "group writable", "other writable", "folder other owner",
                                    "folder writable"])
def test_a_cache_entry_another_user_could_write_is_ignored(home, caplog, damage):
    key = config_cache.cache_key("environments: {}\n")
    config_cache.CACHE.store(key, {"environments": {}})
    entry = home / "config-cache" / (key + ".json")
    if "owner" in damage:
        needs_root()
        os.chown(str(entry.parent if "folder" in damage else entry), OTHER_UID, -1)
    else:
        target = entry.parent if "folder" in damage else entry
        os.chmod(str(target), mode(target) | (0o020 if "group" in damage else 0o002))
    with caplog.at_level(logging.WARNING, logger="nbcore"):
        assert config_cache.CACHE.load(key) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ignored" in warnings[0], warnings
    config_cache.CACHE.store(key, {"environments": {}})  # rebuilt: the next store replaces it with a trusted entry
    assert config_cache.CACHE.load(key) == {"environments": {}}


def test_a_planted_cache_entry_never_runs_its_install_script(tmp_path):
    """Another user replaces the validated config of a project with one that carries an install_script."""
    needs_root()
    home = tmp_path / "home"
    project = tmp_path / "project"
    write(project / "nbcore.yaml", "environments:\n  demo: {}\n")
    variables = {"NBCORE_HOME": str(home)}
    result = run_nbcore("install", "demo", "--backend", "python", cwd=project, env=variables)
    assert result.returncode == 0, result.stderr
    [entry] = (home / "config-cache").glob("*.json")
    planted = json.loads(entry.read_text())
    marker = tmp_path / "PWNED"
    planted["data"]["environments"]["demo"] = {"install_script": "touch %s" % marker}
    entry.write_text(json.dumps(planted))
    os.chown(str(entry), OTHER_UID, -1)
    result = run_nbcore("install", "demo", "--backend", "venv", cwd=project, env=variables)
    assert not marker.exists()
    assert result.returncode == 0, result.stderr
    assert "ignored" in result.stderr and str(entry) in result.stderr, result.stderr


def test_environment_folders_and_markers_have_fixed_modes(tmp_path):
    provider = CountingBackend()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("x",)))
    with umask(0):
        assert ensure_installed(provider, env, QuietProgress()) is True
    assert mode(env.path) == 0o755 and mode(env.path / READY_MARKER) == 0o644
    assert mode(env.path.parent) == 0o755 and mode(env.path.parent.parent) == 0o755


@pytest.mark.parametrize("damage", ["marker other owner", "folder other owner", "marker writable",
                                    "folder writable"])
def test_a_ready_environment_another_user_could_write_is_rebuilt(tmp_path, caplog, damage):
    provider = CountingBackend()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("x",)))
    assert ensure_installed(provider, env, QuietProgress()) is True
    target = env.path / READY_MARKER if "marker" in damage else env.path
    if "owner" in damage:
        needs_root()
        os.chown(str(target), OTHER_UID, -1)
    else:
        os.chmod(str(target), mode(target) | 0o002)
    with caplog.at_level(logging.WARNING, logger="nbcore"):
        assert not is_ready(env)
        assert ensure_installed(provider, env, QuietProgress()) is True
    assert provider.builds == 2 and is_ready(env)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("rebuilt" in w or "ignored" in w for w in warnings), warnings
    assert os.stat(str(env.path)).st_uid == os.geteuid() and mode(env.path) == 0o755
