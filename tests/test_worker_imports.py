"""The worker side imports only the standard library (numpy optional) and runs on Python 3.8."""
import json
import os
import subprocess
import sys

import pytest

from nbcore import open_backend
from nbcore.builtin import venv as venv_backend
from nbcore.plugin.registry import get_registry
from nbcore.host.staging import NBCORE_STUB, stage_worker
from nbcore.testing import python_or_skip

from nbtest import STDLIB_ONLY_CHECKER, write

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    home = tmp_path_factory.mktemp("staging-home")
    return stage_worker(home, [p.worker_module for p in get_registry().protocols.values()])


def test_staged_folder_holds_only_worker_code(staged, tmp_path):
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*.py"))
    assert "nbcore/worker/rpc.py" in files and "nbcore/worker/tcp_pickle.py" in files
    assert (staged / "nbcore" / "__init__.py").read_bytes() == NBCORE_STUB, "the parent package is a stub"
    host_side = {"host.py", "client.py", "cli.py", "config.py", "plugins.py", "selection.py", "store.py"}
    assert not [f for f in files if f.startswith("nbcore/") and f.count("/") == 1 and f.split("/")[1] in host_side]
    # content-addressed: staging again reuses the folder
    assert stage_worker(staged.parent.parent, [p.worker_module for p in get_registry().protocols.values()]) == staged


@pytest.mark.parametrize("version", ["3.8", "host"], ids=["python3.8", "host-python"])
def test_worker_modules_import_with_stdlib_only(staged, tmp_path, version):
    python = sys.executable if version == "host" else python_or_skip(version)
    write(tmp_path / "thirdparty" / "nbt_thirdparty.py", "X = 1\n")
    result = subprocess.run([python, "-s", "-E", "-c", STDLIB_ONLY_CHECKER, str(staged), str(tmp_path / "thirdparty")],
                            capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported" in result.stdout


def test_real_worker_on_python_38(nbcore_home, workdir, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(python_or_skip("3.8")) + os.pathsep + os.environ["PATH"])
    venv_backend.find_interpreter.cache_clear()
    write(workdir / "nbt_py38_mod.py", """
        import sys

        def version():
            return sys.version_info[:2]

        def gen(n):
            yield from range(n)

        class Box:
            def __init__(self):
                import threading
                self.lock = threading.Lock()

            def get(self):
                return 7

        def fail():
            raise ValueError("from 3.8")
        """)
    try:
        with open_backend("py38", config={"environments": {"py38": {"python": "3.8"}}}, backend="venv") as env:
            assert env.worker_python.startswith("3.8.")
            assert env.call("nbt_py38_mod:version") == (3, 8)
            assert env.protocol.endswith("5-buffers")
            assert list(env.call("nbt_py38_mod:gen", 4)) == [0, 1, 2, 3]
            assert env.call("nbt_py38_mod:Box").get() == 7
            with pytest.raises(ValueError, match="from 3.8") as info:
                env.call("nbt_py38_mod:fail")
            assert "nbt_py38_mod.py" in info.value.__cause__.text
            assert env.call("operator:add", b"x" * 3_000_000, b"y") == b"x" * 3_000_000 + b"y"
    finally:
        venv_backend.find_interpreter.cache_clear()


def test_the_worker_caches_the_bytecode_of_its_own_modules_only(nbcore_home, workdir, monkeypatch, tmp_path):
    """Under PYTHONDONTWRITEBYTECODE a worker compiled nbcore's modules at every start; the user's code keeps
    the setting."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    staged = stage_worker(tmp_path / "home", [p.worker_module for p in get_registry().protocols.values()])
    variables = dict(os.environ, PYTHONPATH=str(staged), NBCORE_WORKER_ADDRESS="127.0.0.1:1",
                     NBCORE_WORKER_SECRET="00" * 32, NBCORE_WORKER_PROTOCOLS="tcp-pickle=nbcore.worker.tcp_pickle")
    result = subprocess.run([sys.executable, "-m", "nbcore.worker"], env=variables, capture_output=True, text=True,
                            timeout=60, cwd=str(workdir))
    assert "cannot connect to the host" in result.stderr
    cached = {p.name.split(".")[0] for p in (staged / "nbcore" / "worker").glob("__pycache__/*.pyc")}
    assert {"__init__", "serve", "rpc", "tcp_pickle"} <= cached
    write(workdir / "nbt_bytecode_mod.py", "import sys\n\ndef flag():\n    return sys.dont_write_bytecode\n")
    with open_backend("demo", config={"environments": {"demo": {}}}, backend="venv", protocol="tcp-pickle") as env:
        assert env.call("nbt_bytecode_mod:flag") is True
    assert not (workdir / "__pycache__").exists()


def test_a_worker_whose_code_is_read_only_keeps_its_bytecode_in_the_folder_it_is_given(nbcore_home, workdir,
                                                                                      monkeypatch, tmp_path):
    """Containers mount the worker's code read-only and give it a folder of the environment's
    (``NBCORE_WORKER_PYCACHE``, :func:`nbcore.plugin.containers.worker_bytecode`) for the bytecode of its own modules;
    user code sees neither that folder as ``sys.pycache_prefix`` nor the variable."""
    folder = tmp_path / "env-bytecode"
    folder.mkdir()
    monkeypatch.setenv("NBCORE_WORKER_PYCACHE", str(folder))  # the venv worker inherits it, as a container's gets it
    write(workdir / "nbt_prefix_mod.py", "import os, sys\n\ndef seen():\n"
          "    return sys.pycache_prefix, os.environ.get('NBCORE_WORKER_PYCACHE')\n")
    with open_backend("demo", config={"environments": {"demo": {}}}, backend="venv", protocol="tcp-pickle") as env:
        assert tuple(env.call("nbt_prefix_mod:seen")) == (None, None)
    cached = {p.name.split(".")[0] for p in folder.rglob("nbcore/worker/*.pyc")}
    assert {"serve", "rpc", "tcp_pickle"} <= cached, sorted(str(p) for p in folder.rglob("*.pyc"))[:5]
    assert not list(folder.rglob("nbt_prefix_mod*.pyc")), "user code keeps its own bytecode where it always was"


def test_the_bytecode_folder_of_a_container_worker_is_the_user_s_alone(tmp_path):
    """The worker loads the ``.pyc`` files it finds in that folder: ``0700`` whatever the umask, and a folder another
    user could have written into (a planted module inside) is replaced."""
    from nbcore.plugin.containers import worker_bytecode

    previous = os.umask(0)
    try:
        mount, variables = worker_bytecode(tmp_path)
        folder = tmp_path / "worker-bytecode"
        assert mount.source == mount.target == str(folder) and not mount.read_only
        assert variables == {"NBCORE_WORKER_PYCACHE": str(folder)}
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        folder.chmod(0o777)
        write(folder / "nbcore" / "worker" / "serve.cpython-311.pyc", "planted")
        worker_bytecode(tmp_path)
        assert oct(folder.stat().st_mode & 0o777) == "0o700" and list(folder.iterdir()) == []
    finally:
        os.umask(previous)


def test_the_worker_connects_to_an_ip_address_without_a_name_lookup(tmp_path):
    """A name lookup imports the idna codec (about a millisecond of every worker's start); host names still work."""
    probe = ("import socket, sys; from nbcore.worker.tcp_pickle import _connect\n"
             "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(2)\n"
             "port = server.getsockname()[1]\n"
             "_connect('127.0.0.1', port).close(); print('encodings.idna' in sys.modules)\n"
             "_connect('localhost', port).close(); print('connected')\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=str(tmp_path))
    assert result.stdout.split() == ["False", "connected"], result.stderr


def test_the_worker_start_leaves_out_what_only_some_paths_need(staged, tmp_path):
    """Modules a worker needs only when it ends (signal), runs an install guard (subprocess), cleans a folder
    (shutil) or maps shared memory (ctypes: the host imports nb-shm's worker modules too) are imported there, not
    on every start; the connection's challenge loads no OpenSSL (hashlib, hmac), and modules are imported
    without importlib (and the warnings it imports)."""
    protocols = sorted(p.worker_module for p in get_registry().protocols.values())
    left_out = ('signal', 'shutil', 'subprocess', 'tempfile', 'logging', 'inspect', 'ctypes', 'hashlib', '_hashlib',
                'hmac', 'importlib', 'warnings')
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import nbcore.worker.serve, %s; "
             "print(json.dumps(sorted(m for m in %r if m in sys.modules)))" % (", ".join(protocols), left_out))
    result = subprocess.run([sys.executable, "-S", "-E", "-c", probe, str(staged)], capture_output=True, text=True,
                            timeout=60, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_a_started_worker_runs_without_runpy_and_keeps_its_folder_on_sys_path(nbcore_home, workdir):
    """The worker starts with ``python -c`` (``-m`` imported runpy on every start), yet user code imports from
    its working directory as before, also after an ``os.chdir``."""
    write(workdir / "nbt_start_mod.py", """
        import os
        import sys

        def seen():
            return {"argv": sys.argv, "path": sys.path, "runpy": "runpy" in sys.modules}

        def import_after_chdir(folder):
            os.chdir(folder)
            import nbt_start_other
            return nbt_start_other.X
        """)
    write(workdir / "nbt_start_other.py", "X = 7\n")
    with open_backend("demo", config={"environments": {"demo": {}}}, backend="venv") as env:
        seen = env.call("nbt_start_mod:seen")
        assert seen["argv"] == ["-c"] and not seen["runpy"]
        assert "" not in seen["path"] and str(workdir) in seen["path"]
        assert env.call("nbt_start_mod:import_after_chdir", "/") == 7


def test_user_code_in_the_worker_starts_spawned_processes(nbcore_home, workdir):
    """``multiprocessing`` prepares a spawned child from the parent's ``__main__``: the worker's is ``python -c``'s."""
    write(workdir / "nbt_spawn_mod.py", """
        import multiprocessing

        def square(x):
            return x * x

        def squares(n):
            with multiprocessing.get_context("spawn").Pool(2) as pool:
                return pool.map(square, range(n))
        """)
    with open_backend("demo", config={"environments": {"demo": {}}}, backend="venv") as env:
        assert env.call("nbt_spawn_mod:squares", 4) == [0, 1, 4, 9]
