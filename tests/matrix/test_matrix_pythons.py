"""CI can rely on the version matrix: its Pythons are provisioned, and a missing one fails a required run."""
import re
import subprocess
import sys

from test_version_matrix import CONDA_WORKERS, HOSTS, TOO_OLD, VENV_WORKERS

from nbtest import REPO_ROOT, clean_environ


def test_provision_matrix_provides_every_python_the_matrix_asks_pyenv_for():
    script = (REPO_ROOT / "scripts" / "provision-matrix").read_text()
    provided = set(re.search(r"^PYTHONS=\(([^)]*)\)", script, re.M).group(1).split())
    wanted = {python for python, _ in list(VENV_WORKERS.values()) + list(TOO_OLD.values()) + list(HOSTS.values())}
    wanted.add(CONDA_WORKERS["cd-py39-np123"][0])  # scripts/provision-conda packs pyenv's
    assert wanted <= provided, sorted(wanted - provided)


def run_pair_without_pythons(tmp_path, **variables):
    """One venv pair of the matrix on a machine where no Python but the host's can be found."""
    env = clean_environ({"PATH": "%s:/usr/bin:/bin" % sys.executable.rsplit("/", 1)[0], "HOME": str(tmp_path),
                         "PYENV_ROOT": str(tmp_path / "pyenv"), "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv"),
                         "NBCORE_CI_CACHE": str(tmp_path / "cache"), "NBCORE_MATRIX_HOME": str(tmp_path / "home")})
    env.pop("NBCORE_REQUIRE_ENGINES", None)
    env.pop("NBCORE_SKIP_ENGINES", None)
    env.update(variables)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "matrix",
                           "tests/matrix/test_version_matrix.py", "-k", "host-np2-py37-none"],
                          cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=300)


def test_a_missing_python_skips_its_pair_unless_the_matrix_is_required(tmp_path):
    skipped = run_pair_without_pythons(tmp_path)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout + skipped.stderr
    assert "matrix unavailable: no Python" in skipped.stdout
    failed = run_pair_without_pythons(tmp_path, NBCORE_REQUIRE_ENGINES="matrix")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "matrix is required (NBCORE_REQUIRE_ENGINES) but unavailable: no Python" in failed.stdout
    assert "run scripts/provision-matrix" in failed.stdout
