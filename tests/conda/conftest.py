"""Fixtures of the conda backend's tests: the local channel of real conda packages and the embedded engine.

No conda frontend can be installed on the test machines, so environments are made
by the embedded engine (py-rattler) from the channel ``scripts/provision-conda``
builds (python 3.11 and pip repacked from Debian's packages, and
``nbtest-activation``, whose activate.d script exports NBTEST_ACTIVATED).  The
channel is named ``conda-forge`` inside a folder that ``NBCORE_CONDA_CHANNEL_ALIAS``
points at, so specs that name no channel resolve to it.
"""
import base64
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from nbcore.testing import engine_unavailable

pytest.importorskip("nb_conda", reason="nb-conda is not installed (pip install -e plugins/nb-conda)")

#: Where scripts/provision-conda puts the channels (NBCORE_CONDA_TEST_CHANNELS moves it).
CHANNELS = Path(os.environ.get("NBCORE_CONDA_TEST_CHANNELS")
                or os.path.join(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci"), "conda", "channels"))


@pytest.fixture(scope="module")
def conda_channels():
    """The folder of local channels; selects the embedded engine and aliases channel names into the folder
    (for the tests of one module: the variables do not leak into other test folders)."""
    from nb_conda.embedded import rattler_version

    if rattler_version() is None:
        engine_unavailable("conda", "py-rattler is not installed (pip install py-rattler)")
    if not (CHANNELS / "conda-forge" / "noarch" / "repodata.json").is_file():
        engine_unavailable("conda", "no local test channel in %s: run scripts/provision-conda (root)" % CHANNELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBCORE_CONDA_CHANNEL_ALIAS", CHANNELS.as_uri())
        patch.setenv("NBCORE_CONDA_ENGINE", "embedded")
        patch.delenv("NBCORE_CONDA_SOLVE_TIMEOUT", raising=False)
        yield CHANNELS


@pytest.fixture(scope="session")
def build_wheel():
    """``build_wheel(folder, name, version, code)``: a pure-Python wheel made here (pip installs it with no index)."""
    return _build_wheel


def _build_wheel(folder: Path, name: str, version: str, code: str) -> Path:
    dist = "%s-%s.dist-info" % (name, version)
    files = {
        "%s/__init__.py" % name: code,
        dist + "/METADATA": "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version),
        dist + "/WHEEL": "Wheel-Version: 1.0\nGenerator: nbtest\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(text.encode())))
    files[dist + "/RECORD"] = "\n".join(record + [dist + "/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / ("%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel
