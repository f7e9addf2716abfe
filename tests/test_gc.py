"""``nbcore gc``: by default only what the given config made obsolete; more only when asked; locks respected."""
import json
import os
import time
from pathlib import Path

import pytest

from nbcore.plugin.store import READY_MARKER, install_lock

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env")

DAY = 86400


@pytest.fixture
def home(tmp_path):
    return {"NBCORE_HOME": str(tmp_path / "home")}


def install(config, name, home):
    result = run_nbcore("install", "-c", config, name, "--backend", "python", env=home)
    assert result.returncode == 0, result.stderr


def gc(home, *args):
    result = run_nbcore("gc", "--json", *args, env=home)
    assert result.returncode == 0, result.stderr
    return [(e["name"], e["reason"]) for e in json.loads(result.stdout)]


def names(home):
    return sorted(e["name"] for e in json.loads(run_nbcore("envs", "--all", "--json", env=home).stdout))


def folder_of(home, name, project=None):
    (env,) = [e for e in json.loads(run_nbcore("envs", "--json", env=home).stdout)
              if e["name"] == name and (project is None or e["project"] == str(project))]
    return Path(env["path"])


def test_gc_removes_older_builds_of_the_configs_environments_and_keeps_dropped_names(tmp_path, home):
    config = write(tmp_path / "nbcore.yaml", "environments:\n  keep: {}\n  drop: {python: '3'}\n  change: {packages: [a]}\n")
    for name in ("keep", "drop", "change"):
        install(config, name, home)
    write(config, "environments:\n  keep: {}\n  change: {packages: [b]}\n")
    assert gc(home, "-c", config, "--dry-run") == [("change", "superseded")]
    assert names(home) == ["change", "drop", "keep"], "the dry run removed something"
    result = run_nbcore("gc", "-c", config, env=home)
    assert result.returncode == 0 and "1 environment(s) removed" in result.stdout, result.stderr
    assert names(home) == ["drop", "keep"]
    assert gc(home, "-c", config, "--unreferenced") == [("drop", "unreferenced")]
    assert names(home) == ["keep"]


def test_gc_keeps_other_projects_environments_of_the_same_name(tmp_path, home):
    a = write(tmp_path / "a" / "nbcore.yaml", "environments:\n  demo: {packages: [a]}\n")
    b = write(tmp_path / "b" / "nbcore.yaml", "environments:\n  demo: {packages: [b]}\n")
    install(a, "demo", home)
    install(b, "demo", home)
    assert gc(home, "-c", a) == [] and gc(home, "-c", b) == []
    assert gc(home, "-c", a, "-c", b, "--unreferenced") == []
    write(a, "environments:\n  demo: {packages: [a2]}\n")
    install(a, "demo", home)  # the new build replaces a's older one, never b's
    assert names(home) == ["demo", "demo"] and folder_of(home, "demo", tmp_path / "b").is_dir()
    write(b, "environments:\n  demo: {packages: [b2]}\n")
    assert gc(home, "-c", a) == [], "b's older build is not a's to collect"
    assert gc(home, "-c", b) == [("demo", "superseded")]
    install(b, "demo", home)
    assert gc(home, "-c", a, "--unreferenced") == [("demo", "unreferenced")], "b's goes only when asked"


def test_gc_keeps_an_environment_whose_marker_names_no_project(tmp_path, home):
    config = write(tmp_path / "nbcore.yaml", "environments:\n  demo: {packages: [a]}\n")
    install(config, "demo", home)
    marker = folder_of(home, "demo") / READY_MARKER
    record = json.loads(marker.read_text())
    del record["project"], record["projects"]  # as written before markers recorded their projects
    marker.write_text(json.dumps(record))
    write(config, "environments:\n  demo: {packages: [b]}\n")
    assert gc(home, "-c", config) == []


def test_gc_removes_a_renamed_environment_only_with_unreferenced(tmp_path, home):
    config = write(tmp_path / "nbcore.yaml", "environments:\n  keep: {}\n  old-name: {}\n")
    for name in ("keep", "old-name"):
        install(config, name, home)
    write(config, "environments:\n  keep: {}\n")
    assert gc(home, "-c", config) == []
    assert gc(home, "-c", config, "--unreferenced") == [("old-name", "unreferenced")]


def test_gc_removes_environments_not_opened_for_days(tmp_path, home):
    config = write(tmp_path / "nbcore.yaml", "environments:\n  old: {}\n  opened: {}\n  fresh: {python: '3'}\n")
    for name in ("old", "opened", "fresh"):
        install(config, name, home)
    ten_days_ago = time.time() - 10 * DAY
    for name in ("old", "opened"):
        os.utime(folder_of(home, name) / READY_MARKER, (ten_days_ago, ten_days_ago))
    result = run_nbcore("call", "-c", config, "opened", "os:getpid", "--backend", "python", env=home)
    assert result.returncode == 0, result.stderr
    assert gc(home, "-c", config) == [], "the default removes nothing the config describes"
    assert gc(home, "--older-than", "5") == [("old", "unused for 10 days")], "opening must count as a use"
    assert names(home) == ["fresh", "opened"]


def test_gc_dry_run_shows_sizes(tmp_path, home):
    config = write(tmp_path / "nbcore.yaml", "environments:\n  big: {packages: [a]}\n")
    install(config, "big", home)
    (folder_of(home, "big") / "payload").write_bytes(b"\0" * 2_500_000)
    write(config, "environments:\n  big: {packages: [b]}\n")
    result = run_nbcore("gc", "-c", config, "--dry-run", env=home)
    assert result.returncode == 0, result.stderr
    assert "would remove big (python, superseded, 2.5 MB)" in result.stdout
    assert "1 environment(s) would be removed (2.5 MB)" in result.stdout
    (listed,) = json.loads(run_nbcore("gc", "-c", config, "--dry-run", "--json", env=home).stdout)
    assert listed["bytes"] >= 2_500_000 and listed["reason"] == "superseded"


def test_gc_leaves_a_folder_being_installed_and_never_deletes_lock_files(tmp_path, home):
    config = write(tmp_path / "nbcore.yaml", "environments:\n  demo: {}\n")
    install(config, "demo", home)
    folder = folder_of(home, "demo")
    (folder / READY_MARKER).unlink()  # unfinished, as while an install runs
    with install_lock(folder) as held:
        assert held
        assert gc(home, "-c", config) == [], "gc removed a folder another process is installing"
    assert folder.is_dir()
    assert gc(home, "-c", config) == [("demo", "unfinished")]
    assert not folder.exists()
    assert Path(str(folder) + ".lock").exists(), "a lock file another installer may be waiting on was deleted"


def test_gc_says_what_to_pass(tmp_path, home):
    result = run_nbcore("gc", env=home, cwd=tmp_path)
    assert result.returncode == 2 and "-c FILE" in result.stderr and "--older-than" in result.stderr
    result = run_nbcore("gc", "--older-than", "-1", env=home, cwd=tmp_path)
    assert result.returncode == 2 and "--older-than" in result.stderr
