"""Shared pytest setup for nbcore's own suite (and the plugin suites under tests/)."""
import pytest

pytest_plugins = ["nbcore.testing"]

_SELECTION_VARIABLES = (
    "NBCORE_BACKEND", "NERFBASELINES_BACKEND", "NBCORE_PROTOCOL", "NERFBASELINES_PROTOCOL",
    "NBCORE_CONFIG", "NBCORE_PICKLE_PROTOCOL_MAX", "NBCORE_CONNECT_TIMEOUT",
)


@pytest.fixture
def clean_env(monkeypatch):
    """Unset the variables that steer backend and protocol selection for one test."""
    for name in _SELECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run the test inside an empty temporary folder (the worker's cwd follows the host's)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
