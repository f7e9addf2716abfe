"""Lock files of venv environments: ``nbcore lock`` pins every distribution with its sha256, and a
``venv: {lock_file: ...}`` spec installs exactly that, refusing a file whose hash does not match."""
import hashlib
import os
import re
import shutil
import sys

import pytest

from nbcore.builtin import venv_lock
from nbcore.errors import ConfigError
from nbcore.spec import EnvironmentSpec
from nbtest import run_nbcore, write


def test_pins_keep_exact_versions_and_leave_folders_out():
    frozen = "six==1.16.0\n-e file:///src/mine\nlocal @ file:///src/local\nIdna==3.6\n# comment\n"
    assert venv_lock.pins(frozen) == (["six==1.16.0", "Idna==3.6"],
                                      ["-e file:///src/mine", "local @ file:///src/local"])


def test_hashes_of_downloaded_files(tmp_path):
    (tmp_path / "Six-1.16.0-py2.py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "zope.interface-6.0.tar.gz").write_bytes(b"sdist")
    lines = venv_lock.hashes_of_downloads(tmp_path, ["six==1.16.0", "zope-interface==6.0"])
    assert lines == ["six==1.16.0 \\\n    --hash=sha256:" + hashlib.sha256(b"wheel").hexdigest(),
                     "zope-interface==6.0 \\\n    --hash=sha256:" + hashlib.sha256(b"sdist").hexdigest()]


def test_hash_mismatch_is_read_from_pip_and_uv():
    pip = ["ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated ...",
           "    six==1.16.0 from https://files/six-1.16.0-py2.py3-none-any.whl:", "        Expected sha256 00"]
    assert venv_lock.hash_mismatch(pip) == "six==1.16.0"
    assert venv_lock.hash_mismatch(["  Caused by: Hash mismatch for `six==1.16.0`"]) == "six==1.16.0"
    assert venv_lock.hash_mismatch(["ERROR: No matching distribution found for six==9"]) is None


def test_a_missing_lock_file_is_a_config_error(tmp_path):
    spec = EnvironmentSpec.from_dict({"venv": {"lock_file": "gone.lock"}}, source="nbcore.yaml:3",
                                     base_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"venv.lock_file: .*gone.lock does not exist \(nbcore.yaml:3\)"):
        venv_lock.lock_file(spec)


def test_the_lock_names_its_python(tmp_path):
    lock = write(tmp_path / "m.lock", venv_lock.HEADER + "\n# python: 3.10.13\nsix==1.16.0 \\\n    --hash=sha256:00\n")
    assert venv_lock.locked_python(lock) == "3.10"


def test_the_lock_content_is_part_of_the_identity_and_gives_the_python(tmp_path, monkeypatch):
    from nbcore.builtin.venv import VenvBackend, wanted_python

    lock = write(tmp_path / "m.lock", venv_lock.HEADER + "\n# python: 3.9.18\n")
    spec = EnvironmentSpec.from_dict({"venv": {"lock_file": "m.lock"}}, base_dir=str(tmp_path))
    before = VenvBackend().identity(spec)
    assert wanted_python(spec) == "3.9"
    lock.write_text(venv_lock.HEADER + "\n# python: 3.9.18\nsix==1.16.0 \\\n    --hash=sha256:00\n")
    assert VenvBackend().identity(spec) != before
    assert wanted_python(EnvironmentSpec.from_dict({"python": "3.12", "venv": {"lock_file": "m.lock"}},
                                                   base_dir=str(tmp_path))) == "3.12"


# round trips (slow: they build environments) ---------------------------------------

PACKAGES = ["six==1.16.0", "idna==3.6"]
VERSIONS_MODULE = """
import importlib.metadata as metadata
import sys

def versions():
    return "%d.%d" % sys.version_info[:2], metadata.version("six"), metadata.version("idna")
"""


def without_uv(path):
    return os.pathsep.join(p for p in path.split(os.pathsep) if not os.path.exists(os.path.join(p, "uv")))


def _tamper(text, package):
    """``text`` with every hash of ``package``'s entry replaced."""
    entry = re.search(r"^%s==.*?(?=^\S|\Z)" % re.escape(package), text, re.MULTILINE | re.DOTALL)
    spoiled = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, entry.group(0))
    return text[:entry.start()] + spoiled + text[entry.end():]


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_lock_round_trip(installer, tmp_path):
    python = "3.10" if sys.version_info[:2] != (3, 10) else "3.9"
    variables = {"PATH": os.environ["PATH"] if installer == "uv" else without_uv(os.environ["PATH"])}
    if installer == "uv" and not shutil.which("uv"):
        pytest.skip("uv is not on PATH")
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "nbcore.yaml", "environments:\n  m:\n    python: '%s'\n    packages: %s\n" % (python, PACKAGES))
    result = run_nbcore("lock", "m", "--backend", "venv", "-o", "m.lock", cwd=first,
                        env=dict(variables, NBCORE_HOME=str(tmp_path / "home1")))
    assert result.returncode == 0, result.stderr
    text = (first / "m.lock").read_text()
    assert text.startswith(venv_lock.HEADER + "\n# python: %s." % python)
    for pin in PACKAGES:
        assert re.search(r"^%s \\\n    --hash=sha256:[0-9a-f]{64}" % re.escape(pin), text, re.MULTILINE), text

    # a clean home and a spec that names only the lock: the same Python, exactly those versions
    write(second / "nbcore.yaml", "environments:\n  m:\n    venv: {lock_file: ../first/m.lock}\n")
    write(second / "mod.py", VERSIONS_MODULE)
    home2 = dict(variables, NBCORE_HOME=str(tmp_path / "home2"))
    result = run_nbcore("call", "m", "mod:versions", cwd=second, env=home2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((python, "1.16.0", "3.6"))
    assert "installing the packages of the lock file" in result.stderr

    # a hash that does not match: a one-line error naming the package, nothing installed
    (second / "bad.lock").write_text(_tamper(text, "six"))
    write(second / "nbcore.yaml", "environments:\n  m:\n    venv: {lock_file: bad.lock}\n")
    result = run_nbcore("install", "m", cwd=second, env=home2)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert re.match(r"nbcore: error: installing the lock file .*bad.lock: the file of six==1.16.0 does not match "
                    r"its sha256 in the lock", error), result.stderr
    assert "Traceback" not in result.stderr
