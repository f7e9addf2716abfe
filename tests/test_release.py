"""The release check: every package built as a wheel and an sdist, installed (not editable) into a fresh
venv, and used with every plugin loaded, so a file missing from a distribution cannot hide behind the
editable installs the rest of the suite uses.  Also the documented install commands, with pip and uv."""
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from nbtest import REPO_ROOT, clean_environ, write

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROJECTS = [REPO_ROOT] + sorted(p.parent for p in (REPO_ROOT / "plugins").glob("*/pyproject.toml"))


def run(argv, **kwargs):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                            env=clean_environ(kwargs.pop("env", None)), **kwargs)
    assert result.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(map(str, argv)), result.stdout[-3000:],
                                                          result.stderr[-3000:])
    return result


def packages_of(project):
    """The import packages a project ships, as its pyproject.toml's wheel target lists them."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((project / "pyproject.toml").read_text())
    return config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    for project in PROJECTS:
        run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", out, project])
    return out


def test_every_package_builds_a_wheel_and_an_sdist_with_its_source(dists):
    for project in PROJECTS:
        stem = project.name.replace("-", "_") if project != REPO_ROOT else "nbcore"
        wheels = list(dists.glob(stem + "-*.whl"))
        sdists = list(dists.glob(stem + "-*.tar.gz"))
        assert len(wheels) == 1 and len(sdists) == 1, (project, sorted(p.name for p in dists.iterdir()))
        with zipfile.ZipFile(wheels[0]) as wheel:
            in_wheel = set(wheel.namelist())
        with tarfile.open(sdists[0]) as sdist:
            in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        for package in packages_of(project):
            sources = {str(p.relative_to(project)) for p in (project / package).rglob("*.py")}
            assert sources <= in_wheel, (project.name, sorted(sources - in_wheel))
            assert sources <= in_sdist, (project.name, sorted(sources - in_sdist))


def test_installed_wheels_run_a_call_with_every_plugin_loaded(dists, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    wheels = sorted(dists.glob("*.whl"))
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "numpy"] + wheels)
    installed = json.loads(run([venv / "bin" / "nbcore", "plugins", "--json"], cwd=tmp_path).stdout)
    distributions = {p["distribution"] for p in installed}
    assert {p.name for p in PROJECTS[1:]} | {"nbcore"} <= distributions, distributions
    for plugin in installed:
        assert not str(plugin["module"]).startswith(str(REPO_ROOT)), plugin
    write(tmp_path / "nbcore.yaml", "environments:\n  smoke:\n    packages: [numpy]\n    backends: [venv]\n")
    write(tmp_path / "smoke_target.py", "def total(a):\n    return float(a.sum()), a * 2\n")
    script = ("import numpy as np, nbcore\n"
              "assert 'site-packages' in nbcore.__file__, nbcore.__file__\n"
              "with nbcore.open_backend('smoke', config='nbcore.yaml') as env:\n"
              "    total, doubled = env.call('smoke_target:total', np.arange(6.0))\n"
              "    assert total == 15.0 and doubled[-1] == 10.0\n"
              "    print(env.protocol)\n")
    result = run([python, "-c", script], cwd=tmp_path, env={"NBCORE_HOME": str(tmp_path / "home")})
    assert result.stdout.strip().startswith("shm-pickle"), result.stdout


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_the_documented_install_commands_work(installer, tmp_path):
    """README's first command, then a plugin from its folder, with the venv's own pip (23+) and with uv."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    if installer == "pip":
        install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    else:
        install = [sys.executable, "-m", "uv", "pip", "install", "-q", "--python", python]
    run(install + ["-e", ".[numpy]"], cwd=REPO_ROOT)
    run(install + ["./plugins/nb-shm"], cwd=REPO_ROOT)
    protocols = json.loads(run([venv / "bin" / "nbcore", "protocols", "--json"], cwd=tmp_path).stdout)
    assert "shm-pickle" in {p["name"] for p in protocols["protocols"]}
