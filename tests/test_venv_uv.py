"""The venv backend with uv: packages are installed with their bytecode compiled, as pip does."""
import os
import shutil
import subprocess
import sys

import pytest

from nbtest import run_nbcore

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


def uv_folder(tmp_path):
    """A folder holding ``uv``: the one on PATH, else uv installed from PyPI into ``tmp_path``."""
    found = shutil.which("uv")
    if found:
        return os.path.dirname(found)
    target = tmp_path / "uv-tool"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             "--target", str(target), "uv"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not (target / "bin" / "uv").exists():
        pytest.skip("uv is not on PATH and could not be installed from PyPI: %s" % result.stderr.strip()[-200:])
    return str(target / "bin")


@pytest.mark.slow
def test_uv_built_environment_has_bytecode(tmp_path):
    (tmp_path / "nbcore.yaml").write_text("environments:\n  uvbytecode:\n    packages: [six]\n")
    path = uv_folder(tmp_path) + os.pathsep + os.environ["PATH"]
    result = run_nbcore("install", "uvbytecode", "--backend", "venv", cwd=tmp_path, env={"PATH": path})
    assert result.returncode == 0, result.stderr
    assert "uv" in result.stdout + result.stderr  # built with uv, not venv + pip
    python = run_nbcore("shell", "uvbytecode", "--backend", "venv", "--", "python", "-c",
                        "import six, importlib.util; print(importlib.util.cache_from_source(six.__file__))",
                        cwd=tmp_path, env={"PATH": path})
    assert python.returncode == 0, python.stderr
    assert os.path.exists(python.stdout.strip()), "no bytecode for six: %s" % python.stdout
