"""Shared pytest setup for nbcore's own suite (and the plugin suites under tests/)."""
import os
import resource
import signal
import sys
import threading

import pytest

pytest_plugins = ["nbcore.testing"]


def pytest_configure(config):
    """A run started in the background of a non-interactive shell (``nohup``, ``cmd &``) inherits SIGINT
    ignored, and so would every process the tests start: the Ctrl-C tests then test nothing.  Handled
    here, the children start with the default disposition again."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

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


@pytest.fixture
def later():
    """``later(delay, function, *args)``: run ``function`` in ``delay`` seconds unless the test is over first.

    Every timer is cancelled when the test ends, so a SIGINT or kill meant for one test never
    lands in the next one."""
    timers = []

    def schedule(delay, function, *args):
        timer = threading.Timer(delay, function, args=args)
        timer.daemon = True
        timers.append(timer)
        timer.start()
        return timer

    try:
        yield schedule
    finally:
        for timer in timers:
            timer.cancel()


@pytest.fixture(scope="module")
def worker_module(request, tmp_path_factory):
    """The test module's ``SOURCE`` written as ``<MODULE>.py`` into a fresh folder, the module's tests run in it
    (the workers' working directory, so they import it); with ``HOST_IMPORTS_MODULE = True`` in the test module
    the host can import it too.  Yields the folder."""
    from nbtest import write  # not at the top: it imports nbcore.testing before pytest loads it as a plugin

    module, source = request.module.MODULE, request.module.SOURCE
    host_imports = getattr(request.module, "HOST_IMPORTS_MODULE", False)
    folder = tmp_path_factory.mktemp(module)
    write(folder / (module + ".py"), source)
    previous = os.getcwd()
    os.chdir(str(folder))
    if host_imports:
        sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        if host_imports:
            sys.path.remove(str(folder))
        os.chdir(previous)
        sys.modules.pop(module, None)


@pytest.fixture
def many_descriptors():
    """1100 descriptors open in this process (the limit raised to allow them): the next one opened is above 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip("the hard limit on open files (%d) is below %d" % (hard, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert max(opened) > 1024
        yield
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
