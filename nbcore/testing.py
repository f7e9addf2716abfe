"""Helpers for testing nbcore and its plugins with pytest.

Enable in a plugin's ``conftest.py`` with ``pytest_plugins = ["nbcore.testing"]``.

* :func:`engine_unavailable` skips a test whose engine is missing, or fails it
  when the engine is listed in ``NBCORE_REQUIRE_ENGINES`` (``docker,conda,...``).
* ``nbcore_home`` points ``NBCORE_HOME`` at a folder shared by the whole test
  run (environments are slow to build; their hash keeps them apart).
* ``fresh_registry`` rebuilds the plugin registry for one test.
"""
import os

import pytest


def required_engines():
    """The engines named in ``NBCORE_REQUIRE_ENGINES``."""
    return {e.strip() for e in os.environ.get("NBCORE_REQUIRE_ENGINES", "").split(",") if e.strip()}


def engine_unavailable(engine: str, reason: str):
    """Skip the running test because ``engine`` cannot run, or fail it when the engine is required."""
    if engine in required_engines():
        pytest.fail("%s is required (NBCORE_REQUIRE_ENGINES) but unavailable: %s" % (engine, reason), pytrace=False)
    pytest.skip("%s unavailable: %s" % (engine, reason))


@pytest.fixture(scope="session")
def nbcore_home(tmp_path_factory):
    """An ``NBCORE_HOME`` for the whole run (``NBCORE_TEST_HOME`` reuses one across runs)."""
    home = os.environ.get("NBCORE_TEST_HOME") or str(tmp_path_factory.mktemp("nbcore-home"))
    previous = os.environ.get("NBCORE_HOME")
    os.environ["NBCORE_HOME"] = home
    yield home
    if previous is None:
        os.environ.pop("NBCORE_HOME", None)
    else:
        os.environ["NBCORE_HOME"] = previous


@pytest.fixture
def fresh_registry(monkeypatch):
    """Rebuild the plugin registry for this test (and again afterwards)."""
    from nbcore.plugin import registry as plugins

    monkeypatch.setattr(plugins, "_registry", None)
    yield plugins.get_registry
    plugins._registry = None
