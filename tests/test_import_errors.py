"""Imports that fail say where the worker looked; spec keys cwd: and pythonpath: (relative to the config's folder)."""
import os

import pytest

from nbcore import open_backend
from nbcore.errors import ConfigError
from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


@pytest.fixture
def project(tmp_path):
    """A project whose method lives in method_a/ and its helper in lib/; the host runs from elsewhere."""
    write(tmp_path / "proj" / "method_a" / "method_a.py", "import helper\n\ndef train(n):\n    return helper.twice(n)\n")
    write(tmp_path / "proj" / "lib" / "helper.py", "import os\n\ndef twice(n):\n    return (2 * n, os.getcwd())\n")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


@pytest.mark.parametrize("backend", ["venv", "python"])
def test_cwd_and_pythonpath_are_relative_to_the_config_folder(project, monkeypatch, backend):
    write(project / "proj" / "nbcore.yaml", "environments:\n  m:\n    cwd: method_a\n    pythonpath: [lib]\n")
    monkeypatch.chdir(project / "elsewhere")
    with open_backend("m", config=str(project / "proj" / "nbcore.yaml"), backend=backend) as env:
        doubled, cwd = env.call("method_a:train", 21)
    assert doubled == 42
    if backend == "venv":  # the in-process worker cannot change the host's working directory
        assert os.path.realpath(cwd) == os.path.realpath(str(project / "proj" / "method_a"))


def test_a_missing_module_names_the_working_directory_and_the_import_paths(project, monkeypatch):
    write(project / "proj" / "nbcore.yaml", "environments:\n  m:\n    pythonpath: [lib]\n")
    monkeypatch.chdir(project / "elsewhere")
    with open_backend("m", config=str(project / "proj" / "nbcore.yaml"), backend="venv") as env:
        with pytest.raises(ModuleNotFoundError) as info:
            env.call("method_a:train", 1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("No module named 'method_a' (importing method_a:train; ")
    assert "the worker's working directory is %s" % os.path.realpath(str(project / "elsewhere")) in message \
        or "the worker's working directory is %s" % (project / "elsewhere") in message
    assert "extra import paths: %s" % (project / "proj" / "lib") in message
    assert info.value.name == "method_a"


def test_a_typo_in_nbcore_call_is_one_line_without_the_worker_traceback(project):
    proj = project / "proj"
    write(proj / "nbcore.yaml", "environments:\n  m:\n    cwd: method_a\n    pythonpath: [lib]\n")
    result = run_nbcore("call", "m", "method_a:trian", "--args", "[1]", "--backend", "venv", cwd=proj)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("nbcore: environment m: backend")
             and "installing" not in line and not line.startswith("  ")]
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("nbcore: error: AttributeError: module 'method_a' (")
    assert "has no attribute 'trian' (target method_a:trian; did you mean 'train'?)" in lines[-1]
    result = run_nbcore("call", "m", "method_b:train", "--backend", "venv", cwd=proj)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("nbcore: error: ModuleNotFoundError: No module named 'method_b' "
                                                     "(importing method_b:train; the worker's working directory is ")


def test_cwd_must_be_a_folder_and_keys_are_validated(project):
    write(project / "proj" / "nbcore.yaml", "environments:\n  m:\n    cwd: nowhere\n")
    with pytest.raises(ConfigError, match="cwd: .*nowhere is not a folder"):
        with open_backend("m", config=str(project / "proj" / "nbcore.yaml"), backend="python"):
            pass
    write(project / "proj" / "nbcore.yaml", "environments:\n  m:\n    pythonpath: [1, 2]\n")
    result = run_nbcore("install", "m", cwd=project / "proj")
    assert result.returncode == 2 and "nbcore.yaml:3" in result.stderr and "pythonpath" in result.stderr, result.stderr
