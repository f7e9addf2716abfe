"""Helpers shared by nbcore's own test modules (``from nbtest import ...``)."""
import base64
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbcore.testing import pid_alive  # noqa: F401 (the tests import it from here)

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Variables that change what nbcore picks; a developer's shell must not leak them into the suite.
SELECTION_VARIABLES = (
    "NBCORE_BACKEND", "NERFBASELINES_BACKEND", "NBCORE_PROTOCOL", "NERFBASELINES_PROTOCOL",
    "NBCORE_CONFIG", "NBCORE_PICKLE_PROTOCOL_MAX", "NBCORE_CONNECT_TIMEOUT",
)

#: Whether nb-shm is installed: with it, host and worker upgrade to shm-pickle on this (Linux) machine.
SHM_INSTALLED = importlib.util.find_spec("nb_shm") is not None

#: Run as ``python -s -E -c STDLIB_ONLY_CHECKER STAGED THIRDPARTY`` in the interpreter under test: imports
#: every staged worker module, refusing every import that is neither standard library nor allowed.
STDLIB_ONLY_CHECKER = r'''
import importlib
import importlib.machinery
import os
import sys
import sysconfig

staged, thirdparty = sys.argv[1], sys.argv[2]
# nbcore and the protocol plugins' worker modules are injected (staged); numpy is optional
ALLOWED = {"nbcore", "numpy"} | {n[:-3] if n.endswith(".py") else n for n in os.listdir(staged)}
paths = sysconfig.get_paths()
STDLIB = [p for p in {paths["stdlib"], paths["platstdlib"], os.path.join(paths["stdlib"], "lib-dynload"),
                      os.path.join(paths["platstdlib"], "lib-dynload")} if os.path.isdir(p)]
blocked = []


class StdlibOnly:
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in ALLOWED or "." in fullname or fullname in sys.builtin_module_names:
            return None
        if importlib.machinery.FrozenImporter.find_spec(fullname) is not None:
            return None
        if importlib.machinery.PathFinder.find_spec(fullname, STDLIB) is not None:
            return None
        blocked.append(fullname)
        raise ImportError("not in the standard library: %s" % fullname)


sys.meta_path.insert(0, StdlibOnly())
sys.path[:0] = [staged, thirdparty]

# the hook works: a module outside the standard library is refused
try:
    import nbt_thirdparty  # noqa: F401
except ImportError as exc:
    assert "not in the standard library" in str(exc), exc
else:
    raise SystemExit("the import hook did not block nbt_thirdparty")
del blocked[:]

names = []
for root, dirs, files in os.walk(staged):
    for name in sorted(files):
        if name.endswith(".py"):
            rel = os.path.relpath(os.path.join(root, name), staged)[:-3].replace(os.sep, ".")
            names.append(rel[:-len(".__init__")] if rel.endswith(".__init__") else rel)
for name in sorted(names):
    importlib.import_module(name)
    assert sys.modules[name].__file__.startswith(staged), name
# (``blocked`` may list optional imports that the importer guarded, such as the stdlib's ``org``)
assert "nbcore.worker.rpc" in names and "nbcore.worker.__main__" in names
print("imported %d modules on Python %d.%d; refused: %s" % ((len(names),) + sys.version_info[:2] + (blocked,)))
'''


def write(path, text):
    """Write dedented ``text`` to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def open_test_env(name, config, backend, protocol="tcp-pickle"):
    """``open_backend`` of environment ``name`` of ``config`` on ``backend`` with the selection variables unset,
    checked to speak ``protocol`` (``shm-pickle`` is offered after tcp-pickle, and skips the test without
    nb-shm).  Use it as a context manager."""
    import pytest

    from nbcore import open_backend

    if protocol == "shm-pickle" and not SHM_INSTALLED:
        pytest.skip("nb-shm is not installed")
    with pytest.MonkeyPatch.context() as patch:
        for variable in SELECTION_VARIABLES:
            patch.delenv(variable, raising=False)
        offered = "tcp-pickle,shm-pickle" if protocol == "shm-pickle" else protocol
        env = open_backend(name, config=config, backend=backend, protocol=offered)
    if not env.protocol.startswith(protocol):
        env.close()
        raise AssertionError("%s speaks %s, not %s" % (name, env.protocol, protocol))
    return env


def clean_environ(extra=None):
    """``os.environ`` without the selection variables, plus ``extra``."""
    variables = {k: v for k, v in os.environ.items() if k not in SELECTION_VARIABLES}
    variables.update(extra or {})
    return variables


def run_nbcore(*args, cwd=None, env=None, timeout=300, python=None):
    """Run ``python -m nbcore ARGS`` and return the CompletedProcess (text mode).

    ``env`` adds variables to a copy of ``os.environ`` cleaned of the selection variables.
    """
    return subprocess.run([python or sys.executable, "-m", "nbcore"] + [str(a) for a in args],
                          cwd=None if cwd is None else str(cwd), env=clean_environ(env),
                          capture_output=True, text=True, timeout=timeout)


def cli_json(*args, **kwargs):
    """Run ``nbcore ARGS`` (see :func:`run_nbcore`), check it succeeded, and parse its standard output."""
    result = run_nbcore(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


#: Functions the engine tests' workers import from the working directory (each suite adds its own ``info()``).
#: The start of the RPC tests' worker modules (``SOURCE``): a function to call, the worker's pid and the number of
#: objects it keeps for the host.
RPC_TEST_FUNCTIONS = '''
import os


def add(a, b=0):
    return a + b


def pid():
    return os.getpid()


def live_objects():
    from nbcore.worker import rpc
    return len(rpc._objects)
'''

ENGINE_TEST_MODULE = '''
import os
import sys
import time

import numpy as np


def frames(n):
    return [np.full((4, 5), i, dtype=np.float32) for i in range(n)], np.arange(n, dtype=np.int64)


def read(path):
    with open(path) as f:
        return f.read()


def write(name, text):
    with open(name, "w") as f:
        f.write(text)
    return os.path.abspath(name)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, array):
        return array * self.factor, np.ones(3, dtype=np.uint8) * self.factor
'''


#: The login of the loopback registry behind htpasswd (scripts/provision-registry; a throw-away account).
AUTH_USER, AUTH_PASSWORD = "nbcore-ci", "nbcore-ci-password"


def write_docker_credentials(folder, registry, user=AUTH_USER, password=AUTH_PASSWORD):
    """A Docker config file in ``folder`` (what ``docker login`` writes) with a login for ``registry``'s host."""
    host = registry.split("/", 1)[0]
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))


def check_backend_bench(env_name, backend):
    """A quick ``nbcore bench`` of ``env_name`` on ``backend``: numpy frames, shm-pickle where nb-shm is installed,
    every figure (:func:`check_bench_figures`), the backend named in the report."""
    from nbcore.cli.bench import format_report, run_bench

    result = run_bench(env_name, None, backend, quick=True)
    assert result["backend"] == backend and result["frame_is_numpy"] is True
    assert result["protocol"] == ("shm-pickle5-buffers" if SHM_INSTALLED else "tcp-pickle5-buffers")
    check_bench_figures(result)
    assert "backend " + backend in format_report(result)


def check_bench_figures(result):
    """Assert that a :func:`nbcore.cli.bench.run_bench` result has every figure and ratio, each positive."""
    for key in ("noop_us_median", "frame_to_host_ms", "frame_to_host_prealloc_ms", "frame_to_worker_ms", "memcpy_ms",
                "start_ms", "python_start_ms"):
        assert result[key] > 0, key
    assert result["frame_mb"] == pytest.approx(33.18, abs=0.01)
    assert all(ms > 0 for ms in result["first_call_ms"].values())
    assert set(result["tcp_socket_ms"]) == {"to_host", "to_peer"} and all(v > 0 for v in result["tcp_socket_ms"].values())
    for key in ("open_to_first_result_ms", "cli_call_ms", "open_python_start_ms", "host_python_start_ms"):
        assert result[key] > 0, key
    assert set(result["open_phases_ms"]) == {"import", "plugins", "config_and_store", "worker", "first_call"}
    assert sum(result["open_phases_ms"].values()) == pytest.approx(result["open_to_first_result_ms"], rel=0.5)
    # the least any open could cost: a bare host and worker, started through the backend's command
    assert result["bare_open_ms"] > 0 and result["ratios"]["open_to_first_result_vs_bare_open"] > 0
    for kind in ("plain", "allocated"):
        assert all(result["render_loop"][kind][key] > 0 for key in ("fps", "run_ahead_fps", "in_process_fps"))
    # the plain loop's floors: in-process plus one copy into shared memory, or plus the socket
    floors = ("in_process_one_copy_fps", "in_process_socket_fps")
    assert all(0 < result["render_loop"]["plain"][key] for key in floors)
    assert not set(floors) & set(result["render_loop"]["allocated"])
    assert result["render_loop"]["allocated"]["in_process_shared_fps"] > 0  # its floor: rendered in shared memory
    for ratio in ("open_to_first_result_vs_python_start", "cli_call_vs_pythons_start", "render_loop_vs_in_process",
                  "render_loop_allocated_vs_in_process", "render_loop_run_ahead_vs_in_process",
                  "render_loop_allocated_run_ahead_vs_in_process", "render_loop_vs_in_process_one_copy",
                  "render_loop_run_ahead_vs_in_process_one_copy", "render_loop_vs_in_process_socket",
                  "render_loop_run_ahead_vs_in_process_socket", "render_loop_allocated_vs_in_process_shared",
                  "render_loop_allocated_run_ahead_vs_in_process_shared", "frame_to_host_vs_tcp_socket",
                  "frame_to_worker_vs_tcp_socket"):
        assert result["ratios"][ratio] > 0, ratio
