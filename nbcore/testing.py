"""Helpers for testing nbcore and its plugins with pytest.

Enable in a plugin's ``conftest.py`` with ``pytest_plugins = ["nbcore.testing"]``.

* :func:`engine_unavailable` skips a test whose engine is missing, or fails it
  when the engine is listed in ``NBCORE_REQUIRE_ENGINES`` (``docker,conda,...``).
* ``NBCORE_SKIP_ENGINES=docker,conda,...`` skips the tests marked with those
  engines (``docker`` takes ``registry`` with it), with that reason, even where
  the engine runs.
* ``nbcore_home`` points ``NBCORE_HOME`` at a folder shared by the whole test
  run (environments are slow to build; their hash keeps them apart).
* :func:`find_pythons` / :func:`python_or_skip` find interpreters of another Python
  version (``python3.8`` ...) wherever this machine keeps them.
* :func:`read_line` reads a child's output line with a time limit.
* :func:`wait_until` polls a condition with a time limit; :func:`pid_alive` and
  :func:`wait_gone` watch processes (zombies count as ended).
* ``fresh_registry`` rebuilds the plugin registry for one test.
* :class:`FakeBackend` and :func:`registry_with`: a backend that builds nothing and a
  registry holding it, for tests of selection and registration.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import types

import pytest

from .plugin.backend import BackendProvider
from .plugin.protocol import ProtocolProvider
from .plugin.registry import build_registry, hookimpl


def required_engines():
    """The engines named in ``NBCORE_REQUIRE_ENGINES``."""
    return {e.strip() for e in os.environ.get("NBCORE_REQUIRE_ENGINES", "").split(",") if e.strip()}


#: Test markers that name an engine; a skipped engine also skips the markers listed with it.
ENGINE_MARKERS = {"docker": ("docker", "registry"), "apptainer": ("apptainer",), "conda": ("conda",),
                  "ray": ("ray",), "registry": ("registry",), "slurm": ("slurm",)}


def skipped_engines():
    """The engines named in ``NBCORE_SKIP_ENGINES``."""
    return {e.strip() for e in os.environ.get("NBCORE_SKIP_ENGINES", "").split(",") if e.strip()}


def _skip_reason(markers):
    for engine in sorted(skipped_engines()):
        if set(ENGINE_MARKERS.get(engine, (engine,))) & markers:
            return "%s tests skipped: NBCORE_SKIP_ENGINES=%s" % (engine, os.environ.get("NBCORE_SKIP_ENGINES"))
    return None


def pytest_configure(config):
    both = skipped_engines() & required_engines()
    if both:
        raise pytest.UsageError("%s is both required (NBCORE_REQUIRE_ENGINES) and skipped (NBCORE_SKIP_ENGINES); "
                                "unset one" % ", ".join(sorted(both)))


def pytest_collection_modifyitems(config, items):
    if not skipped_engines():
        return
    for item in items:
        reason = _skip_reason({mark.name for mark in item.iter_markers()})
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def engine_unavailable(engine: str, reason: str):
    """Skip the running test because ``engine`` cannot run, or fail it when the engine is required."""
    skipped = _skip_reason({engine})
    if skipped:
        pytest.skip(skipped, allow_module_level=True)
    if engine in required_engines():
        pytest.fail("%s is required (NBCORE_REQUIRE_ENGINES) but unavailable: %s" % (engine, reason), pytrace=False)
    pytest.skip("%s unavailable: %s" % (engine, reason), allow_module_level=True)


def _uv():
    found = shutil.which("uv")
    if found:
        return found
    beside = os.path.join(sysconfig.get_path("scripts"), "uv")  # the test extra installs it there
    return beside if os.access(beside, os.X_OK) else None


def _python_candidates(version):
    name = "python" + version
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        yield os.path.join(folder or ".", name)
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    yield from sorted(glob.glob(os.path.join(pyenv_root, "versions", version + ".*", "bin", name)), reverse=True)
    uv = _uv()
    if uv:
        try:
            out = subprocess.run([uv, "python", "find", "--no-python-downloads", version],
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return
        if out.returncode == 0:
            yield from out.stdout.splitlines()


def find_pythons(version):
    """Interpreters of Python ``version`` (``"3.8"``), each run once to check it: ``pythonX.Y``
    on ``PATH``, pyenv's versions (``$PYENV_ROOT`` or ``~/.pyenv``), and what
    ``uv python find --no-python-downloads`` finds.  Paths are the interpreters' own
    ``sys.executable`` (a pyenv shim resolves to the real one), without duplicates."""
    found, seen = [], set()
    probe = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
    for candidate in _python_candidates(version):
        if not candidate or not os.access(candidate, os.X_OK) or os.path.isdir(candidate):
            continue
        try:
            out = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = out.stdout.split("\n")
        if out.returncode != 0 or len(lines) < 2 or lines[0] != version or not lines[1]:
            continue
        real = os.path.realpath(lines[1])
        if real not in seen:
            seen.add(real)
            found.append(lines[1])
    return found


def python_or_skip(version):
    """The first interpreter of Python ``version``, or skip the test (fail it when
    ``NBCORE_REQUIRE_ENGINES`` names ``pythonX.Y``)."""
    if version == "%d.%d" % sys.version_info[:2]:
        return sys.executable
    found = find_pythons(version)
    if not found:
        engine_unavailable("python" + version, "no Python %s interpreter found (python%s on PATH, pyenv versions, "
                                               "uv python find)" % (version, version))
    return found[0]


def read_line(stream, timeout=60.0):
    """The next line of a child's ``stream``; fail the test if none comes within ``timeout`` seconds."""
    box = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        pytest.fail("no line from the child within %.0f s" % timeout, pytrace=False)
    return box[0]


def wait_until(condition, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; fail the test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0f s waiting for %s" % (timeout, what), pytrace=False)
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 10.0, what: str = "") -> None:
    """Wait until process ``pid`` has ended; else kill it (nothing outlives the test) and fail, naming ``what``."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
            pytest.fail("process %d is still alive after %.0f s%s" % (pid, timeout, ": " + what if what else ""),
                        pytrace=False)
        time.sleep(0.05)


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



class FakeBackend(BackendProvider):
    """A backend for tests of selection and registration: it installs nothing and starts no worker.

    ``reason`` is what :meth:`check_available` answers (None: available); keyword arguments set
    attributes (``auto_priority=90``, ``required_by_section=True``, ...).
    """

    def __init__(self, name, reason=None, **attributes):
        self.name = name
        self.reason = reason
        vars(self).update(attributes)

    def check_available(self):
        return self.reason

    def install(self, env, progress):
        pass

    def start_worker(self, env, launch):
        raise NotImplementedError("%s is a test backend: it starts no worker" % self.name)

def registry_with(*providers, register=None, name="test_plugin"):
    """A registry of nbcore's built-ins (no installed plugin) and one plugin ``name`` that registers
    ``providers`` (backends and protocols, by type) and then calls ``register(register_object)`` when given."""
    extra = register

    def nbcore_register(register):  # pluggy passes hook arguments by name
        for provider in providers:
            if isinstance(provider, ProtocolProvider):
                register.protocol(provider)
            else:
                register.backend(provider)
        if extra is not None:
            extra(register)

    module = types.ModuleType(name)
    module.nbcore_register = hookimpl(nbcore_register)
    return build_registry(plugins=[module], autoload=False)
