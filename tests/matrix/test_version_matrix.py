"""The version matrix: hosts on numpy 2.x, numpy 1.26 and no numpy against workers on every
Python 3.7-3.13 (venv backend, pyenv's interpreters) with the newest numpy wheel for that Python,
an old pin, or no numpy, and Debian's Pythons in Docker (bullseye 3.9, bookworm 3.11, trixie 3.13,
sid 3.14), and conda environments of the local test channel (pyenv's 3.9 with numpy 1.23, Debian's
3.11 with the newest numpy; embedded engine).  Every pair exchanges ``nbmatrix``'s objects both ways, a proxy, a generator of arrays
and an exception carrying an array, over tcp-pickle and over the default list (shm-pickle where
the worker's Python has it).

Environments live in a home reused across runs of the same machine (``NBCORE_MATRIX_HOME``,
default ``/var/cache/nbcore-ci/matrix``), wheels in ``/var/cache/nbcore-ci/{uv,pip}``; the two
extra host venvs are made by each run.  Select with ``-m matrix`` (docker pairs also carry
``docker``, conda pairs ``conda``).  The Pythons come from pyenv (``scripts/provision-matrix``):
with ``NBCORE_REQUIRE_ENGINES`` naming ``matrix``, a pair whose Python is missing fails.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbcore.testing import engine_unavailable, find_pythons

from nbtest import REPO_ROOT, clean_environ

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci"))
HOME = Path(os.environ.get("NBCORE_MATRIX_HOME", str(CACHE / "matrix")))

#: Worker environments of the venv backend: name -> (Python, packages).  An unpinned numpy is the
#: newest wheel for that Python.
VENV_WORKERS = {
    "py37-np": ("3.7", ["numpy"]),  # 1.21.6, the last numpy for 3.7: newest and old pin at once
    "py37-none": ("3.7", []),
    "py38-np": ("3.8", ["numpy"]),
    "py38-np121": ("3.8", ["numpy==1.21.*"]),
    "py39-np": ("3.9", ["numpy"]),
    "py39-np123": ("3.9", ["numpy<1.24"]),
    "py310-np": ("3.10", ["numpy"]),
    "py310-np123": ("3.10", ["numpy==1.23.*"]),
    "py310-none": ("3.10", []),
    "py311-np": ("3.11", ["numpy"]),
    "py311-np123": ("3.11", ["numpy==1.23.*"]),
    "py312-np": ("3.12", ["numpy"]),
    "py312-np126": ("3.12", ["numpy==1.26.*"]),
    "py313-np": ("3.13", ["numpy"]),
    "py313-np21": ("3.13", ["numpy==2.1.*"]),
    "py313-none": ("3.13", []),
}
#: Worker environments of the docker backend: name -> (Python, packages, image or None for the CI base image).
DOCKER_WORKERS = {
    "dk-bullseye-np123": ("3.9", ["numpy<1.24"], None),
    "dk-bookworm-np": ("3.11", ["numpy"], None),
    "dk-trixie-np": ("3.13", ["numpy"], None),
    "dk-trixie-none": ("3.13", [], None),
    "dk-sid-np": ("3.14", ["numpy"], "nbcore-ci/apptainer:sid"),  # the apptainer provisioning's sid root
}
#: Worker environments of the conda backend (the channel of scripts/provision-conda): name -> (Python, packages).
CONDA_WORKERS = {
    "cd-py39-np123": ("3.9", ["numpy<1.24"]),  # pyenv's interpreter, repacked as a conda package
    "cd-py311-np": ("3.11", ["numpy"]),  # Debian's
}
#: Where scripts/provision-conda puts the channels (NBCORE_CONDA_TEST_CHANNELS moves it).
CONDA_CHANNELS = Path(os.environ.get("NBCORE_CONDA_TEST_CHANNELS") or str(CACHE / "conda" / "channels"))
#: An environment on a Python nbcore does not support (pyenv has 3.6).
TOO_OLD = {"py36": ("3.6", [])}
#: Host venvs besides the test run's own (numpy 2.x): name -> (Python, extra packages).
HOSTS = {
    "host-np126": ("3.9", ["numpy==1.26.*"]),
    "host-none": ("3.13", []),
}

#: The pairs that run: (host, worker).  The numpy-2 host meets every worker; the others a selection
#: that crosses numpy 1.x/2.x and the oldest and newest Pythons.
PAIRS = ([("host-np2", w) for w in VENV_WORKERS] + [("host-np2", w) for w in DOCKER_WORKERS]
         + [("host-np2", w) for w in CONDA_WORKERS]
         + [("host-np126", w) for w in ("py37-np", "py39-np", "py311-np", "py312-np126", "py313-np",
                                        "py313-none", "dk-trixie-np")]
         + [("host-none", w) for w in ("py37-np", "py311-np", "py313-none")])


def pair_id(pair):
    return "%s-%s" % pair


def config_text():
    lines = ["environments:"]
    for name, (python, packages) in list(VENV_WORKERS.items()) + list(TOO_OLD.items()):
        lines += ["  %s:" % name, "    python: %s" % json.dumps(python), "    packages: %s" % json.dumps(packages),
                  "    backends: [venv]"]
    for name, (python, packages, image) in DOCKER_WORKERS.items():
        lines += ["  %s:" % name, "    python: %s" % json.dumps(python), "    packages: %s" % json.dumps(packages),
                  "    backends: [docker]"]
        if image:
            lines += ["    docker: {image: %s}" % json.dumps(image)]
    for name, (python, packages) in CONDA_WORKERS.items():
        lines += ["  %s:" % name, "    python: %s" % json.dumps(python), "    packages: %s" % json.dumps(packages),
                  "    backends: [conda]"]
    return "\n".join(lines) + "\n"


def pyenv_bins():
    """Every pyenv ``versions/X/bin`` folder (the venv backend finds ``pythonX.Y`` on PATH)."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    return [str(p / "bin") for p in sorted((root / "versions").glob("3.*")) if (p / "bin").is_dir()]


def interpreter(version):
    found = find_pythons(version)
    if not found:
        engine_unavailable("matrix", "no Python %s interpreter (pyenv, PATH, uv): run scripts/provision-matrix" % version)
    return found[0]


@pytest.fixture(scope="session")
def matrix_project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix-project")
    folder.chmod(0o777)
    shutil.copy(HERE / "nbmatrix.py", folder / "nbmatrix.py")
    shutil.copy(HERE / "matrix_host.py", folder / "matrix_host.py")
    (folder / "nbcore.yaml").write_text(config_text())
    return folder


@pytest.fixture(scope="session")
def matrix_environ():
    """The variables every host of the matrix runs with."""
    for sub in ("uv", "pip"):
        (CACHE / sub).mkdir(parents=True, exist_ok=True)
    HOME.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(pyenv_bins() + [os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return clean_environ({"NBCORE_HOME": str(HOME), "UV_CACHE_DIR": str(CACHE / "uv"),
                          "PIP_CACHE_DIR": str(CACHE / "pip"), "PATH": path,
                          "NBCORE_DOCKER_BASE_IMAGE": "nbcore-ci/python:{python}",
                          "NBCORE_CONDA_CHANNEL_ALIAS": CONDA_CHANNELS.as_uri(), "NBCORE_CONDA_ENGINE": "embedded"})


@pytest.fixture(scope="session")
def host_pythons(tmp_path_factory, matrix_environ):
    """Host name -> interpreter: the run's own (numpy 2.x) and venvs made here with uv."""
    uv = shutil.which("uv", path=matrix_environ["PATH"])
    hosts = {"host-np2": sys.executable}
    plugins = [str(REPO_ROOT / "plugins" / p) for p in ("nb-shm", "nb-docker") if (REPO_ROOT / "plugins" / p).is_dir()]
    for name, (version, packages) in HOSTS.items():
        folder = tmp_path_factory.mktemp(name)
        run = lambda *argv: subprocess.run(argv, env=matrix_environ, capture_output=True, text=True, timeout=600)
        made = run(uv, "venv", "-q", "--python", interpreter(version), str(folder / "venv"))
        assert made.returncode == 0, made.stderr
        python = str(folder / "venv" / "bin" / "python")
        editable = [arg for path in [str(REPO_ROOT)] + plugins for arg in ("-e", path)]
        installed = run(uv, "pip", "install", "-q", "--python", python, *editable, *packages)
        assert installed.returncode == 0, installed.stderr
        hosts[name] = python
    return hosts


def run_pair(host_pythons, matrix_project, matrix_environ, host, worker, *protocols):
    result = subprocess.run([host_pythons[host], "matrix_host.py", worker] + list(protocols), cwd=str(matrix_project),
                            env=matrix_environ, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def docker_ready(worker):
    from nb_docker.engine import api_client, unavailable_reason
    from nb_docker.images import image_exists

    reason = unavailable_reason()
    if reason:
        engine_unavailable("docker", reason)
    python, _, image = DOCKER_WORKERS[worker]
    engine = "apptainer" if image else "docker"  # sid's root comes from scripts/provision-apptainer
    image = image or "nbcore-ci/python:" + python
    if not image_exists(api_client(), image):
        engine_unavailable(engine, "image %s is missing: run scripts/provision-%s" % (image, engine))


def conda_ready(worker):
    """The embedded engine runs here and the test channel has the worker's Python."""
    try:
        from nb_conda.embedded import rattler_version
    except ImportError:
        engine_unavailable("conda", "nb-conda is not installed (pip install -e plugins/nb-conda)")
    if rattler_version() is None:
        engine_unavailable("conda", "py-rattler is not installed (pip install py-rattler)")
    python = CONDA_WORKERS[worker][0]
    repodata = CONDA_CHANNELS / "conda-forge" / "linux-64" / "repodata.json"
    packages = json.loads(repodata.read_text()).get("packages", {}).values() if repodata.is_file() else []
    if not any(p["name"] == "python" and p["version"].startswith(python + ".") for p in packages):
        engine_unavailable("conda", "the local test channel %s has no python %s: run scripts/provision-conda (it packs "
                                    "pyenv's %s)" % (CONDA_CHANNELS / "conda-forge", python, python))


def matrix_params():
    for host, worker in PAIRS:
        marks = ([pytest.mark.docker] if worker in DOCKER_WORKERS else [pytest.mark.conda] if worker in CONDA_WORKERS
                 else [])
        yield pytest.param(host, worker, marks=marks, id=pair_id((host, worker)))


pytestmark = [pytest.mark.matrix, pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.mark.parametrize("host, worker", list(matrix_params()))
def test_pair_exchanges_every_numpy_object_both_ways(host_pythons, matrix_project, matrix_environ, host, worker):
    python = (VENV_WORKERS.get(worker) or DOCKER_WORKERS.get(worker) or CONDA_WORKERS[worker])[0]
    if worker in DOCKER_WORKERS:
        docker_ready(worker)
    elif worker in CONDA_WORKERS:
        conda_ready(worker)
    else:
        interpreter(python)
    report = run_pair(host_pythons, matrix_project, matrix_environ, host, worker)
    assert not report["failures"], "\n".join(report["failures"])
    assert report["worker"]["python"].startswith(python + ".")
    protocols = report["protocols"]
    assert protocols["tcp-pickle"].startswith("tcp-pickle")
    if python == "3.7":  # no pickle protocol 5, no shared memory: the default list keeps tcp-pickle
        assert protocols["tcp-pickle,shm-pickle"] == "tcp-pickle4"
    elif worker not in DOCKER_WORKERS:  # docker workers share /dev/shm only with --ipc host
        assert protocols["tcp-pickle,shm-pickle"] == "shm-pickle5-buffers"


@pytest.mark.parametrize("host, worker, protocols, negotiated", [
    ("host-np2", "py39-np123", "tcp-pickle", "tcp-pickle5-buffers"),
    ("host-np2", "py39-np123", "tcp-pickle,shm-pickle", "shm-pickle5-buffers"),
    ("host-np126", "py312-np", "tcp-pickle", "tcp-pickle5-buffers"),
    ("host-np126", "py312-np", "tcp-pickle,shm-pickle", "shm-pickle5-buffers"),
    ("host-np2", "py37-np", None, "tcp-pickle4"),
], ids=lambda v: str(v))
def test_cli_call_returns_numpy_values_across_numpy_versions(host_pythons, matrix_project, matrix_environ, host, worker,
                                                              protocols, negotiated):
    """``nbcore call`` of a function that takes a float32 Fortran-ordered array and a structured array
    and returns ``(arr.sum(), np.float32(2.5), arr[::2])`` (built in the worker: the CLI passes JSON)."""
    argv = [host_pythons[host], "-m", "nbcore", "call", worker, "nbmatrix:acceptance"]
    environ = dict(matrix_environ)
    if protocols:
        argv += ["--protocol", protocols]
    else:
        environ.pop("NBCORE_PROTOCOL", None)
    printed = subprocess.run(argv, cwd=str(matrix_project), env=environ, capture_output=True, text=True, timeout=600)
    assert printed.returncode == 0, printed.stderr[-2000:]
    text = " ".join(printed.stdout.split())
    assert "66.0" in text and "2.5" in text and "[[0., 1., 2.], [6., 7., 8.]], dtype=float32" in text, printed.stdout
    as_json = subprocess.run(argv + ["--json"], cwd=str(matrix_project), env=environ, capture_output=True, text=True,
                             timeout=600)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    answer = json.loads(as_json.stdout)
    assert answer["result"] == [66.0, 2.5, [[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]]]
    assert answer["protocol"] == negotiated


def test_a_worker_older_than_python_37_fails_at_open_with_one_line(matrix_project, matrix_environ):
    interpreter("3.6")
    result = subprocess.run([sys.executable, "-m", "nbcore", "call", "py36", "os:getpid"], cwd=str(matrix_project),
                            env=matrix_environ, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2  # a user error: the spec asks for an unsupported Python
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("nbcore: error: py36: the environment runs Python 3.6; nbcore needs Python 3.7 or newer there "
                    "(3.8+ for shm-pickle): ask for a newer python in its spec"), result.stderr
    assert "Traceback" not in result.stderr
