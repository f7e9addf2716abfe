"""The store on a read-only or full disk, and with a damaged ready marker: one line, nothing left behind."""
import contextlib
import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from nbcore.home import HomeNotWritable
from nbcore.plugin import store
from nbcore.host.staging import stage_worker
from nbcore.plugin.store import READY_MARKER, ensure_installed, make_environment
from nbcore.plugin.registry import get_registry
from nbcore.spec import EnvironmentSpec

from nbtest import run_nbcore, write
from test_store import CountingBackend, QuietProgress

pytestmark = pytest.mark.usefixtures("clean_env")


@contextlib.contextmanager
def tmpfs(folder: Path, options="size=1m"):
    """A real tmpfs mounted at ``folder`` (the test is skipped where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (folder modes do not stop root, so only a mount makes a "
                    "read-only or full disk)")
    folder.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True, text=True, timeout=30)
    if result.returncode:
        pytest.skip("cannot mount a tmpfs here: %s" % result.stderr.strip())
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], timeout=30)


def remount_read_only(folder: Path):
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=30)


def fill(folder: Path):
    """Write into ``folder`` until its disk is full."""
    with open(folder / "filler", "wb") as f:
        with pytest.raises(OSError) as raised:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    assert raised.value.errno == errno.ENOSPC


def config(tmp_path):
    return write(tmp_path / "project" / "nbcore.yaml", "environments:\n  demo: {}\n")


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("nbcore: error:")]
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), result.stderr
    return lines[0]


def leftovers(home: Path):
    """What an install left under ``home`` besides folders and lock files (which stay by design)."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and p.suffix != ".lock")


def test_read_only_home_is_a_one_line_error_for_install_and_call(tmp_path):
    cfg = config(tmp_path)
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        home = {"NBCORE_HOME": str(mount / "home")}
        line = one_line_error(run_nbcore("install", "-c", cfg, "demo", "--backend", "python", env=home),
                              str(mount), "Read-only file system", "set NBCORE_HOME")
        assert line.startswith("nbcore: error: cannot write to %s" % mount)
        one_line_error(run_nbcore("call", "-c", cfg, "demo", "os:getpid", "--backend", "python", env=home),
                       "Read-only file system", "set NBCORE_HOME")
        assert list(mount.iterdir()) == []


def test_doctor_reports_an_unwritable_home(tmp_path):
    cfg = config(tmp_path)
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        result = run_nbcore("doctor", "-c", cfg, "--json", env={"NBCORE_HOME": str(mount / "home")})
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["home"]["writable"] is False
        assert [p for p in report["problems"] if "not writable" in p and "Read-only file system" in p]
        text = run_nbcore("doctor", "-c", cfg, env={"NBCORE_HOME": str(mount / "home")}).stdout
        assert "problem: the cache folder is not writable" in text
    report = json.loads(run_nbcore("doctor", "-c", cfg, "--json", env={"NBCORE_HOME": str(tmp_path / "h")}).stdout)
    assert report["home"]["writable"] is True and not [p for p in report["problems"] if "not writable" in p]


def test_full_disk_while_writing_the_ready_marker_leaves_nothing(tmp_path):
    cfg = config(tmp_path)
    with tmpfs(tmp_path / "disk", "size=256k") as mount:
        fill(mount)
        home = mount / "home"
        one_line_error(run_nbcore("install", "-c", cfg, "demo", "--backend", "python", env={"NBCORE_HOME": str(home)}),
                       str(home / "envs" / "python"), "No space left on device", "free some space")
        assert leftovers(home) == [] and list((home / "envs" / "python").glob("*/")) == []


def test_full_disk_while_staging_the_worker_code_leaves_nothing(tmp_path):
    with tmpfs(tmp_path / "disk", "size=256k") as mount:
        fill(mount)
        with pytest.raises(HomeNotWritable, match="No space left on device") as raised:
            stage_worker(mount / "home", [p.worker_module for p in get_registry().protocols.values()])
        assert "\n" not in str(raised.value) and str(mount / "home" / "worker") in str(raised.value)
        assert list((mount / "home" / "worker").iterdir()) == []


def test_ready_environment_opens_on_a_home_made_read_only_later(tmp_path):
    cfg = config(tmp_path)
    with tmpfs(tmp_path / "disk") as mount:
        home = {"NBCORE_HOME": str(mount / "home")}
        result = run_nbcore("call", "-c", cfg, "demo", "os:getpid", "--backend", "python", env=home)
        assert result.returncode == 0, result.stderr
        remount_read_only(mount)
        result = run_nbcore("call", "-c", cfg, "demo", "os:getpid", "--backend", "python", env=home)
        assert result.returncode == 0, result.stderr


def test_disk_full_at_the_ready_marker_is_cleaned_up_in_process(tmp_path, monkeypatch):
    """The same as with a real full disk, for machines where no tmpfs can be mounted."""
    real_fdopen = os.fdopen

    class FullDisk:
        """A file whose writes stop after 10 characters for want of space."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def fileno(self):
            return self.f.fileno()

        def write(self, data):
            self.f.write(data[:10])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        return FullDisk(f) if READY_MARKER in os.readlink("/proc/self/fd/%d" % fd) else f

    monkeypatch.setattr(os, "fdopen", fdopen)
    env = make_environment(tmp_path, CountingBackend(), "demo", EnvironmentSpec())
    with pytest.raises(HomeNotWritable) as raised:
        ensure_installed(CountingBackend(), env, QuietProgress())
    assert str(raised.value) == ("cannot write to %s (No space left on device): free some space there, or set "
                                 "NBCORE_HOME to a folder on another disk" % env.path)
    assert not env.path.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["{garbage", "[1, 2]", ""])
def test_damaged_ready_marker_is_named_and_treated_as_unfinished(tmp_path, damage):
    cfg = config(tmp_path)
    home = {"NBCORE_HOME": str(tmp_path / "home")}
    assert run_nbcore("install", "-c", cfg, "demo", "--backend", "python", env=home).returncode == 0
    (marker,) = (tmp_path / "home").rglob(READY_MARKER)
    marker.write_text(damage)
    result = run_nbcore("envs", "--json", env=home)
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stderr
    assert "nbcore: the ready marker %s is damaged" % marker in result.stderr and "Traceback" not in result.stderr
    (listed,) = json.loads(run_nbcore("envs", "--all", "--json", env=home).stdout)
    assert listed["ready"] is False and listed["name"] == "demo"
    result = run_nbcore("gc", "-c", cfg, "--json", env=home)
    assert result.returncode == 0, result.stderr
    assert [(e["name"], e["reason"]) for e in json.loads(result.stdout)] == [("demo", "unfinished")]


def test_damaged_ready_marker_is_rebuilt_by_the_next_install(tmp_path):
    provider = CountingBackend()
    env = make_environment(tmp_path, CountingBackend(), "demo", EnvironmentSpec())
    ensure_installed(provider, env, QuietProgress())
    (env.path / READY_MARKER).write_text("{garbage")
    assert not store.is_ready(env)
    assert ensure_installed(provider, env, QuietProgress()) is True and provider.builds == 2 and store.is_ready(env)


def test_a_permission_error_outside_the_home_is_not_blamed_on_it(tmp_path):
    class Failing(CountingBackend):
        def install(self, env, progress):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/usr/bin/some-tool")

    env = make_environment(tmp_path, CountingBackend(), "demo", EnvironmentSpec())
    with pytest.raises(PermissionError):
        ensure_installed(Failing(), env, QuietProgress())
    assert not env.path.exists()
