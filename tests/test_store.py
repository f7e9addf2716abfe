"""The environment store: ready markers, cross-process install locks, recovery, gc."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbcore.plugin.backend import BackendProvider
from nbcore.errors import InstallError
from nbcore.plugin.progress import Progress
from nbcore.spec import EnvironmentSpec
from nbcore.plugin.store import READY_MARKER, ensure_installed, is_ready, list_environments, make_environment

from nbcore.testing import read_line, wait_until
from nbtest import clean_environ, run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env")


class CountingBackend(BackendProvider):
    name = "counting"

    def __init__(self, fail=False):
        self.builds = 0
        self.fail = fail

    def check_available(self):
        return None

    def install(self, env, progress):
        assert env.path.is_dir() and not list(env.path.iterdir()), "install must start in an empty folder"
        self.builds += 1
        (env.path / "payload").write_text("built")
        assert not is_ready(env), "the ready marker must come after install"
        if self.fail:
            raise InstallError("step X failed")

    def start_worker(self, env, launch):
        raise NotImplementedError


class QuietProgress(Progress):
    def __init__(self):
        self.steps = []

    def step(self, message):
        self.steps.append(message)


def test_builds_once_and_marks_ready(tmp_path):
    provider = CountingBackend()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("x",)))
    assert env.path.parent == tmp_path / "envs" / "counting"
    assert env.path.name == "demo-" + env.spec_hash[:12]
    assert ensure_installed(provider, env, QuietProgress()) is True
    assert ensure_installed(provider, env, QuietProgress()) is False
    assert provider.builds == 1 and is_ready(env)
    record = json.loads((env.path / READY_MARKER).read_text())
    assert record["hash"] == env.spec_hash and record["spec"] == {"packages": ["x"]}
    assert ensure_installed(provider, env, QuietProgress(), force=True) is True
    assert provider.builds == 2


def test_spec_changes_change_the_identity():
    base = EnvironmentSpec()
    variants = [EnvironmentSpec(python="3.9"), EnvironmentSpec(packages=("numpy",)),
                EnvironmentSpec(install_script="true"), EnvironmentSpec(sections={"venv": {"x": 1}})]
    ids = {base.identity("venv")} | {v.identity("venv") for v in variants}
    assert len(ids) == 5
    assert base.identity("venv") != base.identity("conda")
    # another backend's section and the preferred order do not change what venv builds
    assert EnvironmentSpec(sections={"docker": {"image": "x"}}, backends=("docker",)).identity("venv") == base.identity("venv")


def test_failed_install_leaves_nothing(tmp_path):
    provider = CountingBackend(fail=True)
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec())
    with pytest.raises(InstallError, match="step X failed"):
        ensure_installed(provider, env, QuietProgress())
    assert not env.path.exists() and not is_ready(env)


def test_unfinished_folder_is_removed_and_rebuilt(tmp_path):
    provider = CountingBackend()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec())
    env.path.mkdir(parents=True)
    (env.path / "half-built").write_text("")
    assert [e["ready"] for e in list_environments(tmp_path)] == [False]
    progress = QuietProgress()
    assert ensure_installed(provider, env, progress)
    assert any("removing the unfinished environment" in s for s in progress.steps)
    assert sorted(p.name for p in env.path.iterdir()) == [READY_MARKER, "payload"]
    (record,) = list_environments(tmp_path)
    assert record["ready"] and record["name"] == "demo" and record["backend"] == "counting" and record["bytes"] > 0


def test_missing_install_is_rebuilt(tmp_path):
    class Vanishing(CountingBackend):
        def is_installed(self, env):
            return (env.path / "payload").exists()

    provider = Vanishing()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec())
    ensure_installed(provider, env, QuietProgress())
    (env.path / "payload").unlink()
    assert ensure_installed(provider, env, QuietProgress()) is True
    assert provider.builds == 2


# across processes, through the CLI ---------------------------------------------------

def install_config(tmp_path, script):
    import textwrap

    import yaml

    spec = {"install_script": textwrap.dedent(script).strip() + "\n"}
    return write(tmp_path / "nbcore.yaml", yaml.safe_dump({"environments": {"demo": spec}}))


def start_install(config, home, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "nbcore", "install", "-c", str(config), "demo", "--backend", "venv"],
                            env=clean_environ({"NBCORE_HOME": str(home)}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


def test_concurrent_installs_build_once(tmp_path):
    count = tmp_path / "builds"
    config = install_config(tmp_path, "echo build >> %s\nsleep 1" % count)
    home = tmp_path / "home"
    processes = [start_install(config, home) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err
    assert count.read_text().splitlines() == ["build"]
    waited = sum("another process is installing" in err or "already installed" in err for _, err in outputs)
    assert waited == 3
    envs = json.loads(run_nbcore("envs", "--json", env={"NBCORE_HOME": str(home)}).stdout)
    assert [(e["name"], e["backend"], e["ready"]) for e in envs] == [("demo", "venv", True)]


def install_that_hangs_the_first_time(tmp_path):
    """Start an install whose first build hangs; return once it hangs: ``(config, home, builds file, process)``."""
    count, started = tmp_path / "builds", tmp_path / "started"
    config = install_config(tmp_path, """
        echo build >> %s
        if [ "$(wc -l < %s)" -eq 1 ]; then touch %s; sleep 60; fi
        """ % (count, count, started))
    home = tmp_path / "home"
    first = start_install(config, home)
    wait_until(Path(started).exists, 60, "%s to appear" % started)
    return config, home, count, first


def test_killed_installer_is_recovered(tmp_path):
    config, home, count, first = install_that_hangs_the_first_time(tmp_path)
    waiting = start_install(config, home)  # blocks on the lock held by the first installer
    seen = ""
    while "another process is installing" not in seen:  # once it says so (a loaded machine may take seconds)
        seen += read_line(waiting.stderr, 120)
    assert waiting.poll() is None
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    out, err = waiting.communicate(timeout=120)
    err = seen + err
    assert waiting.returncode == 0, err
    assert "another process is installing" in err and "removing the unfinished environment" in err
    assert count.read_text().splitlines() == ["build", "build"]
    envs = json.loads(run_nbcore("envs", "--json", env={"NBCORE_HOME": str(home)}).stdout)
    assert [e["ready"] for e in envs] == [True]


def test_killed_installer_leaves_a_half_built_folder_the_next_install_replaces(tmp_path):
    config, home, count, first = install_that_hangs_the_first_time(tmp_path)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    envs = json.loads(run_nbcore("envs", "--all", "--json", env={"NBCORE_HOME": str(home)}).stdout)
    assert [e["ready"] for e in envs] == [False]
    assert json.loads(run_nbcore("envs", "--json", env={"NBCORE_HOME": str(home)}).stdout) == []
    result = run_nbcore("install", "-c", config, "demo", "--backend", "venv", env={"NBCORE_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "removing the unfinished environment" in result.stderr
    assert count.read_text().splitlines() == ["build", "build"]
    result = run_nbcore("install", "-c", config, "demo", "--backend", "venv", env={"NBCORE_HOME": str(home)})
    assert result.returncode == 0 and "already installed" in result.stderr


def test_a_new_build_removes_the_older_builds_of_its_project_only(tmp_path):
    provider = CountingBackend()

    def env(name, package, project):
        return make_environment(tmp_path, provider, name, EnvironmentSpec(packages=(package,), base_dir=project))

    old, other, namesake = env("demo", "a", "/p/one"), env("demo", "z", "/p/two"), env("demo-2", "a", "/p/one")
    for each in (old, other, namesake):
        ensure_installed(provider, each, QuietProgress())
    progress = QuietProgress()
    ensure_installed(provider, env("demo", "b", "/p/one"), progress)
    assert not old.path.exists() and "removed the older build %s" % old.path in progress.steps
    assert is_ready(other) and is_ready(namesake)


def test_a_build_that_another_project_uses_too_is_not_replaced(tmp_path):
    provider = CountingBackend()
    shared = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("a",), base_dir="/p/one"))
    ensure_installed(provider, shared, QuietProgress())
    same_spec_elsewhere = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("a",), base_dir="/p/two"))
    assert same_spec_elsewhere.path == shared.path, "no install script: one build serves both projects"
    assert ensure_installed(provider, same_spec_elsewhere, QuietProgress()) is False
    assert json.loads((shared.path / READY_MARKER).read_text())["projects"] == ["/p/one", "/p/two"]
    newer = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("b",), base_dir="/p/one"))
    ensure_installed(provider, newer, QuietProgress())
    assert is_ready(shared), "project two still uses it"


def test_an_open_environment_is_neither_replaced_nor_collected(tmp_path, monkeypatch):
    from nbcore.cli.gc import collect_garbage
    from nbcore.plugin.store import InUse

    monkeypatch.setenv("NBCORE_HOME", str(tmp_path))
    provider = CountingBackend()
    old = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("a",), base_dir=str(tmp_path)))
    ensure_installed(provider, old, QuietProgress())
    holder = InUse(old.path)
    try:
        progress = QuietProgress()
        new = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("b",), base_dir=str(tmp_path)))
        ensure_installed(provider, new, progress)
        assert is_ready(old) and "kept the older build %s: it is open or being installed" % old.path in progress.steps
        config = write(tmp_path / "nbcore.yaml", "environments:\n  demo: {packages: [b]}\n")
        assert collect_garbage([config]) == [] and is_ready(old)
    finally:
        holder.release()
    assert [r["path"] for r in collect_garbage([config])] == [str(old.path)]


def test_a_waiting_install_returns_once_the_env_is_ready_and_open_elsewhere(tmp_path, monkeypatch):
    """The first opener installs, then holds the lock shared while its environment is open: a second
    opener that was waiting for the install must not wait for that close (NBCORE_INSTALL_TIMEOUT)."""
    import threading

    from nbcore.plugin.store import InUse, install_lock, write_record

    monkeypatch.setenv("NBCORE_INSTALL_TIMEOUT", "60")
    provider = CountingBackend()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("x",)))
    env.path.parent.mkdir(parents=True)
    outcome = []
    with install_lock(env.path) as held:  # the first opener's install
        assert held
        waiter = threading.Thread(target=lambda: outcome.append(ensure_installed(provider, env, QuietProgress())))
        waiter.start()
        time.sleep(0.3)
        env.path.mkdir()
        write_record(env)
    in_use = InUse(env.path)  # the first opener's environment is now open
    try:
        waiter.join(20)
        assert outcome == [False] and provider.builds == 0
    finally:
        in_use.release()
        waiter.join(70)
