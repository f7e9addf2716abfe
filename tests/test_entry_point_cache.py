"""The plugins' entry points are remembered between starts, and a distribution installed or removed since is noticed."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from nbcore.plugin import entry_points as module
from nbcore.plugin.entry_points import EntryPoint, entry_points

from nbtest import clean_environ, write

#: Prints the names of the entry points found and whether importlib.metadata had to be imported for them.
PROBE = ("import json, sys; from nbcore.plugin.entry_points import entry_points; names = [e.name for e in "
         "entry_points()]; print(json.dumps([names, 'importlib.metadata' in sys.modules]))")


def probe(tmp_path, site):
    variables = clean_environ({"NBCORE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(site)})
    work = tmp_path / "work"  # on sys.path ("-c"): kept apart from the home, which changes
    work.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=str(work), env=variables, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def add_distribution(site, name):
    info = site / ("%s-1.0.dist-info" % name)
    write(info / "METADATA", "Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n" % name)
    write(info / "entry_points.txt", "[nbcore]\n%s = %s_plugin\n" % (name, name))
    return info


def test_a_remembered_list_is_used_until_a_distribution_comes_or_goes(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    names, read = probe(tmp_path, site)
    assert read and "nbtest-added" not in names
    assert probe(tmp_path, site) == [names, False], "the second start reads nothing"
    info = add_distribution(site, "nbtest-added")
    names, read = probe(tmp_path, site)
    assert read and "nbtest-added" in names, "an installed plugin is found at the next start"
    assert probe(tmp_path, site) == [names, False]
    shutil.rmtree(str(info))
    names, read = probe(tmp_path, site)
    assert read and "nbtest-added" not in names, "a removed plugin is gone at the next start"


def test_a_list_another_user_could_have_written_is_ignored(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home"))
    found = entry_points()
    [entry] = list((tmp_path / "home" / "plugin-cache").glob("*.json"))
    planted = json.loads(entry.read_text())
    planted["entry_points"] = [["planted", "os", "planted", "1.0"]]
    entry.write_text(json.dumps(planted))
    os.chmod(str(entry), 0o666)
    assert entry_points() == found
    assert "ignored the cached list of plugins" in caplog.text and "it is writable by" in caplog.text
    assert (entry.stat().st_mode & 0o777) == 0o600, "rebuilt as this user's alone"


def test_a_damaged_list_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home"))
    found = entry_points()
    [entry] = list((tmp_path / "home" / "plugin-cache").glob("*.json"))
    entry.write_text(json.dumps({"stamps": module._stamps(), "entry_points": [["too", "few"]]}))
    assert entry_points() == found


@pytest.mark.parametrize("value, expected", [("os.path", os.path), ("os:path", os.path), ("os:path.join", os.path.join),
                                             ("os:path [extra]", os.path)])
def test_an_entry_point_loads_its_module_or_attribute(value, expected):
    assert EntryPoint("name", value, None, None).load() is expected
