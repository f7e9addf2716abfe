"""Installing a plugin does not move a built environment to it: a ready venv build is kept when nb-conda appears."""
import json

import pytest

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

OTHERS = "nb-docker,nb-apptainer,nb-ray"


@pytest.fixture
def project(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  keptbuild: {}\n")
    write(tmp_path / "mod.py", "def f(a, b):\n    return a + b\n")
    return tmp_path


def test_a_ready_venv_build_is_kept_after_nb_conda_is_installed(project):
    without_conda = {"NBCORE_DISABLE_PLUGINS": "nb-conda," + OTHERS}
    with_conda = {"NBCORE_DISABLE_PLUGINS": OTHERS}
    result = run_nbcore("backends", "--json", cwd=project, env=with_conda)
    conda = [b for b in json.loads(result.stdout) if b["name"] == "conda"]
    if not conda or not conda[0]["available"]:
        pytest.skip("the conda backend (nb-conda) is not available here")

    result = run_nbcore("install", "keptbuild", cwd=project, env=without_conda)
    assert result.returncode == 0, result.stderr
    assert "nbcore: environment keptbuild: backend venv (automatic: the first available of venv)" in result.stderr

    # nb-conda "installed": automatic selection would now pick conda first, but venv has a ready build
    result = run_nbcore("install", "keptbuild", cwd=project, env=with_conda)
    assert result.returncode == 0, result.stderr
    assert ("nbcore: environment keptbuild: backend venv (automatic: it has a ready build of this spec (a new build would "
            "use conda; `nbcore install --rebuild` or --backend conda moves it))") in result.stderr.splitlines()
    assert "already installed" in result.stderr
    result = run_nbcore("call", "keptbuild", "mod:f", "--args", "[2, 3]", "--json", cwd=project, env=with_conda)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "venv"
    assert "it has a ready build of this spec" in result.stderr, "call says why, too"
    envs = json.loads(run_nbcore("envs", "--json", cwd=project, env=with_conda).stdout)
    assert [e["backend"] for e in envs if e["name"] == "keptbuild"] == ["venv"], "nothing was rebuilt on conda"

    # a call on a ready environment chosen the usual way says nothing about it
    result = run_nbcore("call", "keptbuild", "mod:f", "--args", "[2, 3]", cwd=project, env=without_conda)
    assert result.returncode == 0 and result.stderr == "", result.stderr
