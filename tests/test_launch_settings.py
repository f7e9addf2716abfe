"""Bad launch settings and options: one line naming the setting and what it accepts, never a traceback."""
import json
import os

import pytest

from nbcore.plugin.store import READY_MARKER

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


@pytest.fixture
def project(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  bare: {}\n")
    return tmp_path


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbcore: error: "), result.stderr
    assert all(f in lines[0] for f in fragments), result.stderr
    return lines[0]


@pytest.mark.parametrize("backend", ["python", "venv"])
@pytest.mark.parametrize("variable, value", [
    ("NBCORE_KEEPALIVE", "abc"), ("NBCORE_KEEPALIVE", "-5"), ("NBCORE_KEEPALIVE", "nan"),
    ("NBCORE_KEEPALIVE", "0"), ("NBCORE_CONNECT_TIMEOUT", "abc"), ("NBCORE_CONNECT_TIMEOUT", "inf"),
    ("NBCORE_ADVERTISE", "nonexistent.invalid"), ("NBCORE_INSTALL_TIMEOUT", "soon"),
    ("NBCORE_PORTS", "9-3"), ("NBCORE_PICKLE_PROTOCOL_MAX", "abc"), ("NBCORE_BUFFER_POOL_MB", "abc"),
    ("NBCORE_BUFFER_POOL_MB", "-1"),
])
def test_a_bad_launch_variable_is_one_line(project, backend, variable, value):
    result = run_nbcore("call", "bare", "os:getpid", "--backend", backend, cwd=project, env={variable: value})
    one_line_error(result, "%s=%r" % (variable, value))


def test_the_settings_name_what_they_accept(monkeypatch):
    from nbcore import settings
    from nbcore.errors import UserError

    monkeypatch.setenv("NBCORE_KEEPALIVE", "nan")
    with pytest.raises(UserError, match=r"NBCORE_KEEPALIVE='nan' .*positive number of seconds"):
        settings.keepalive_seconds()
    monkeypatch.setenv("NBCORE_KEEPALIVE", " 7.5 ")
    assert settings.keepalive_seconds() == 7.5


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "abc"])
def test_gc_older_than_rejects_what_is_not_a_number_of_days(project, value):
    result = run_nbcore("gc", "--older-than", value, "--dry-run", cwd=project)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--older-than" in result.stderr and "days" in result.stderr, result.stderr


@pytest.mark.parametrize("field, value", [("name", 5), ("backend", ["venv"]), ("spec", "x"), ("hash", 3)])
def test_a_marker_with_fields_of_the_wrong_type_is_damaged(tmp_path, monkeypatch, field, value):
    home = tmp_path / "home"
    folder = home / "envs" / "venv" / "demo-0123456789ab"
    folder.mkdir(parents=True)
    record = {"name": "demo", "backend": "venv", "hash": "0123456789abcdef", "spec": {}, "projects": []}
    record[field] = value
    (folder / READY_MARKER).write_text(json.dumps(record))
    result = run_nbcore("envs", "--json", "--all", env={"NBCORE_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [(e["name"], e["ready"]) for e in listed] == [("demo", False)], listed
    assert "damaged" in result.stderr and field in result.stderr, result.stderr
