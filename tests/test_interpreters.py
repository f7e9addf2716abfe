"""Finding Pythons where users keep them (PATH, pyenv, uv, mise, asdf), requests with patch versions and
ranges, the one-line error when none matches, the YAML ``3.10`` trap, and ``nbcore doctor``'s listing.

The version-manager trees are built in a temporary home with symlinks to real interpreters of this machine.
"""
import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from nbcore import open_backend
from nbcore.builtin import venv as venv_backend
from nbcore.errors import BackendUnavailable, ConfigError
from nbcore.host import interpreters
from nbcore.host.config import config_from_dict, parse_config
from nbcore.host.selection import choose_backend
from nbcore.plugin import registry as plugins
from nbcore.plugin.backend import Environment
from nbcore.spec import EnvironmentSpec
from nbcore.testing import python_or_skip
from nbtest import cli_json, run_nbcore, write

PYENV_BIN = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "bin" / "pyenv"


_MACHINE_ENVIRON = dict(os.environ)


@functools.lru_cache(maxsize=None)
def _real(version):
    with mock.patch.dict(os.environ, _MACHINE_ENVIRON, clear=True):  # the machine's PATH and pyenv, not a test's
        path = python_or_skip(version)
    return path, ".".join(map(str, interpreters.run_version(path)))


def real(version):
    """A real interpreter of ``version`` (``"3.10"``) and its full version, e.g. ``(path, "3.10.13")``."""
    return _real(version)


def link(path, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.realpath(target), str(path))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home and a PATH of one empty folder: only what a test puts there is found."""
    for name in ("PYENV_ROOT", "PYENV_VERSION", "XDG_DATA_HOME", "UV_PYTHON_INSTALL_DIR", "MISE_DATA_DIR",
                 "ASDF_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", str(home / "bin"))
    venv_backend.find_interpreter.cache_clear()
    yield home
    venv_backend.find_interpreter.cache_clear()


@pytest.fixture
def trees(home):
    """A pyenv with 3.10 (and folders that are no CPython), uv with 3.9, mise with 3.8, asdf with 3.13, and
    PATH with python3.12 and a failing shim; returns ``{source: full version}``."""
    py310, v310 = real("3.10")
    py39, v39 = real("3.9")
    py38, v38 = real("3.8")
    py313, v313 = real("3.13")
    py312, v312 = real("3.12")
    link(home / ".pyenv" / "versions" / v310 / "bin" / "python3", py310)
    link(home / ".pyenv" / "versions" / "myenv" / "bin" / "python3", py310)  # a pyenv-virtualenv name
    link(home / ".local" / "share" / "uv" / "python" / ("cpython-%s-linux-x86_64-gnu" % v39) / "bin" / "python3", py39)
    link(home / ".local" / "share" / "mise" / "installs" / "python" / v38 / "bin" / "python", py38)
    link(home / ".asdf" / "installs" / "python" / v313 / "bin" / "python", py313)
    link(home / "bin" / "python3.12", py312)
    shim = write(home / "shims" / "python3.10", "#!/bin/sh\nexit 1\n")  # what pyenv's shims do without a version
    shim.chmod(0o755)
    os.environ["PATH"] += os.pathsep + str(shim.parent)
    return {"pyenv": v310, "uv": v39, "mise": v38, "asdf": v313, "PATH": v312}


def test_discovery_reads_folders_and_runs_nothing(trees, home, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran %s" % (a,)))
    found = interpreters.discover()
    assert [(i.source, i.version_text) for i in found] == [
        ("PATH", ".".join(trees["PATH"].split(".")[:2])), ("pyenv", trees["pyenv"]), ("uv", trees["uv"]),
        ("mise", trees["mise"]), ("asdf", trees["asdf"])]
    assert found[1].path == str(home / ".pyenv" / "versions" / trees["pyenv"] / "bin" / "python3")


def test_pyenv_root_and_data_dirs_are_honoured(home, tmp_path, monkeypatch):
    py310, v310 = real("3.10")
    link(tmp_path / "elsewhere" / "versions" / v310 / "bin" / "python3", py310)
    link(tmp_path / "mise-data" / "installs" / "python" / v310 / "bin" / "python", py310)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "elsewhere"))
    assert [i.source for i in interpreters.discover()] == ["pyenv"]  # the same real interpreter, listed once
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MISE_DATA_DIR", str(tmp_path / "mise-data"))
    assert [(i.source, i.version_text) for i in interpreters.discover()] == [("mise", v310)]


def test_each_source_provides_its_version_and_the_choice_is_run_once(trees, monkeypatch):
    runs = []
    original = interpreters.run_version
    monkeypatch.setattr(interpreters, "run_version", lambda path: runs.append(path) or original(path))
    for source in ("pyenv", "uv", "mise", "asdf"):
        runs.clear()
        chosen = interpreters.find_interpreter(".".join(trees[source].split(".")[:2]))
        assert chosen and "/%s/" % {"pyenv": ".pyenv", "uv": "uv", "mise": "mise", "asdf": ".asdf"}[source] in chosen
        assert len(runs) == 1
    assert interpreters.find_interpreter("3.10") != os.path.join(os.environ["HOME"], "shims", "python3.10")


def test_patch_versions_and_ranges(trees):
    v310 = trees["pyenv"]
    assert "/.pyenv/" in interpreters.find_interpreter(v310)
    assert interpreters.find_interpreter(v310 + "9") is None  # 3.10.139 is not 3.10.13
    assert "/.pyenv/" in interpreters.find_interpreter(">=3.9,<3.11")  # the newest the range allows
    assert "/uv/" in interpreters.find_interpreter(">=3.9,<3.10")
    assert "/mise/" in interpreters.find_interpreter("==3.8.*")
    assert interpreters.find_interpreter("~=3.13.0") is not None
    assert interpreters.find_interpreter(">=3.20") is None
    # a PATH interpreter known only as python3.12 is run to decide a patch request
    assert interpreters.find_interpreter(trees["PATH"]) == os.path.join(os.environ["HOME"], "bin", "python3.12")


def test_a_candidate_that_is_not_what_its_folder_says_is_skipped(home):
    py39, _ = real("3.9")
    link(home / ".pyenv" / "versions" / "3.10.99" / "bin" / "python3", py39)
    assert interpreters.find_interpreter("3.10") is None


def test_requests():
    request = interpreters.PythonRequest(">=3.9,<3.11")
    assert request.matches((3, 10, 2)) and not request.matches((3, 11, 0)) and request.matches((3, 9)) is True
    assert request.install_target() == "3.10"
    assert interpreters.PythonRequest("3.10").matches((3, 10)) is True
    assert interpreters.PythonRequest("3.10.4").matches((3, 10)) is None  # needs the interpreter's own answer
    assert interpreters.PythonRequest("3.10.4").matches((3, 11)) is False
    assert interpreters.PythonRequest("==3.11.4").matches((3, 11)) is None
    assert interpreters.python_matches("3", (3, 7, 1)) and not interpreters.python_matches("3.1", (3, 10, 0))
    with pytest.raises(ConfigError, match="neither a version"):
        interpreters.PythonRequest(">=three")


def test_no_match_is_one_line_naming_what_was_found_and_the_ways_here(trees, home):
    message = interpreters.not_found_message("3.7", managers={"pyenv": "pyenv", "uv": "uv"})
    assert message == ("no Python 3.7 found (found: PATH %s; pyenv %s; uv %s; mise %s; asdf %s); install it with "
                       "`pyenv install 3.7` or `uv python install 3.7`"
                       % (trees["PATH"][:4], trees["pyenv"], trees["uv"], trees["mise"], trees["asdf"]))
    assert interpreters.not_found_message(">=3.20", found=[], managers={"mise": "mise", "asdf": "asdf"}) == (
        "no Python >=3.20 found (found: none); install it with `mise install python@3.20` or "
        "`asdf install python latest:3.20`")
    # nothing installed here (PATH has no uv, no pyenv): the message never claims a tool that is absent
    assert interpreters.version_managers() == {}
    message = interpreters.not_found_message("3.7")
    assert message.endswith("; install Python 3.7 on PATH, or `pip install uv` then `uv python install 3.7`")
    assert "uv found" not in message


def test_pyenv_is_offered_when_it_is_installed(home):
    if not os.access(str(PYENV_BIN), os.X_OK):
        pytest.skip("pyenv is not installed here")
    pyenv = link(home / ".pyenv" / "bin" / "pyenv", PYENV_BIN)
    assert interpreters.version_managers() == {"pyenv": str(pyenv)}  # not on PATH: named by its path
    assert interpreters.not_found_message("3.7", found=[]).endswith("install it with `%s install 3.7`" % pyenv)
    link(home / "bin" / "pyenv", PYENV_BIN)
    assert interpreters.not_found_message("3.7", found=[]).endswith("install it with `pyenv install 3.7`")


def test_the_venv_backend_error_is_one_line_and_points_nowhere_useless(trees, home, tmp_path):
    registry = plugins.build_registry(autoload=False)
    spec = EnvironmentSpec(python="3.7")

    def env_for(provider):
        return Environment("old", spec, provider.name, "0" * 64, tmp_path / provider.name)

    with pytest.raises(BackendUnavailable) as info:
        choose_backend(registry, env_for, spec, requested="venv")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("backend 'venv' cannot run this environment: no Python 3.7 found (found: PATH ")
    assert "nbcore backends" not in message and "uv found" not in message
    assert re.search(r"no other installed backend can run it; installable: apptainer \(pip install \S*nb-apptainer\), "
                     r"conda \(pip install \S*nb-conda\)", message), message


def test_a_host_python_spec_names_the_backends_that_can_run_it(tmp_path):
    """A backend that can run the spec is named with the flag that picks it."""
    registry = plugins.build_registry(autoload=False)
    spec = EnvironmentSpec(python="2.9", backends=("python",))
    registry.backends["venv"].check_spec = lambda env: None

    def env_for(provider):
        return Environment("x", spec, provider.name, "0" * 64, tmp_path)

    with pytest.raises(BackendUnavailable, match=r"other installed backends that can run it: venv \(--backend venv\)"):
        choose_backend(registry, env_for, spec, requested="python")


def test_a_range_is_refused_by_backends_that_take_versions_only(tmp_path):
    """A backend that does not accept ranges never sees one (its image tag or solver spec would break)."""

    class VersionsOnly(venv_backend.VenvBackend):
        name = "versions-only"
        accepts_python_ranges = False

    registry = plugins.build_registry(autoload=False)
    registry.backends["versions-only"] = VersionsOnly()
    spec = EnvironmentSpec(python=">=3.9,<3.11")

    def env_for(provider):
        return Environment("r", spec, provider.name, "0" * 64, tmp_path)

    with pytest.raises(BackendUnavailable) as info:
        choose_backend(registry, env_for, spec, requested="versions-only")
    assert str(info.value).startswith("backend 'versions-only' cannot run this environment: the versions-only "
                                      "backend takes a Python version (\"3.10\", \"3.10.13\"), not a range "
                                      "like \">=3.9,<3.11\"")


# configuration -----------------------------------------------------------------

def test_unquoted_python_310_is_caught_with_a_hint():
    text = "environments:\n  m:\n    packages: [six]\n    python: 3.10\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "nbcore.yaml", {})
    assert str(info.value) == ('nbcore.yaml:4: environments.m.python: 3.10 is read by YAML as the number 3.1; '
                               'quote it: python: "3.10"')
    assert parse_config("environments:\n  m: {python: 3.9}\n", "x", {}).environments["m"].python == "3.9"


@pytest.mark.parametrize("value", ["3.10.13", ">=3.9,<3.11", "==3.10.*", "~=3.10"])
def test_python_ranges_and_patches_are_valid(value):
    assert config_from_dict({"environments": {"m": {"python": value}}}, {}).environments["m"].python == value


def test_a_python_that_is_no_version_is_a_one_line_error():
    with pytest.raises(ConfigError) as info:
        parse_config("environments:\n  m:\n    python: latest\n", "nbcore.yaml", {})
    assert str(info.value) == ("nbcore.yaml:3: environments.m.python: 'latest' is neither a Python version "
                               "(\"3.10\", \"3.10.13\") nor a range (\">=3.9,<3.11\")")


# nbcore doctor -------------------------------------------------------------------

def test_doctor_lists_the_interpreters_and_where(trees, home, tmp_path):
    variables = {"HOME": str(home), "PATH": os.environ["PATH"], "NBCORE_HOME": str(tmp_path / "nbhome")}
    report = cli_json("doctor", "--json", cwd=tmp_path, env=variables)
    assert [(i["source"], i["version"]) for i in report["interpreters"]["found"]][1:] == [
        ("pyenv", trees["pyenv"]), ("uv", trees["uv"]), ("mise", trees["mise"]), ("asdf", trees["asdf"])]
    assert report["interpreters"]["version_managers"] == []
    text = run_nbcore("doctor", cwd=tmp_path, env=variables).stdout
    assert "pythons: 5 found (version managers: none)" in text
    assert "  %-8s pyenv  %s" % (trees["pyenv"], home / ".pyenv" / "versions" / trees["pyenv"] / "bin" / "python3") \
        in text


# building from them (slow) -------------------------------------------------------

@pytest.mark.slow
def test_a_venv_from_pyenv_without_pyenv_version_or_path(home, tmp_path, monkeypatch, nbcore_home, clean_env):
    """``python: "3.10"``, a patch and a range each build from the pyenv tree alone."""
    py310, v310 = real("3.10")
    link(home / ".pyenv" / "versions" / v310 / "bin" / "python3", py310)
    uv = os.path.join(os.path.dirname(sys.executable), "uv")
    if os.access(uv, os.X_OK):
        link(home / "bin" / "uv", uv)
    write(tmp_path / "nbt_which.py", "import sys\n\ndef version():\n    return list(sys.version_info[:3])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for request in ("3.10", v310, ">=3.9,<3.11"):
        config = {"environments": {"m": {"python": request}}}
        with open_backend("m", config=config, backend="venv") as env:
            assert env.call("nbt_which:version") == [int(p) for p in v310.split(".")]


@pytest.mark.slow
def test_nbcore_call_finds_this_machines_pyenv_python(tmp_path):
    """The machine's own ``~/.pyenv``, with ``PYENV_ROOT`` and ``PYENV_VERSION`` unset and no pyenv on PATH."""
    versions = Path.home() / ".pyenv" / "versions"
    wanted = "3.10" if sys.version_info[:2] != (3, 10) else "3.9"
    if not list(versions.glob(wanted + ".*/bin/python3")):
        pytest.skip("no Python %s in %s" % (wanted, versions))
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".pyenv" not in p)
    write(tmp_path / "nbcore.yaml", "environments:\n  m:\n    python: '%s'\n" % wanted)
    write(tmp_path / "mod.py", "import sys\n\ndef version():\n    return '%d.%d' % sys.version_info[:2]\n")
    variables = {"PATH": path, "NBCORE_HOME": str(tmp_path / "home"), "PYENV_ROOT": "", "PYENV_VERSION": ""}
    result = run_nbcore("call", "m", "mod:version", "--backend", "venv", cwd=tmp_path, env=variables)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == wanted
