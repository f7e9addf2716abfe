"""The ``nbcore`` command line: listings, call, shell, errors as one line, Ctrl-C."""
import json
import os
import select
import signal
import subprocess
import sys
import sysconfig
import time

import pytest

from nbcore.plugin.catalog import FIRST_PARTY
from nbcore.plugin.registry import get_registry

from nbtest import REPO_ROOT, SHM_INSTALLED, clean_environ, cli_json, pid_alive, run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

MOD = '''
import os
import sys
import time


def f(a, b):
    return {"sum": a + b, "python": sys.version_info[:2]}


def fail(x):
    raise ValueError("no good: %s" % x)


def sleepy(path):
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
'''


@pytest.fixture
def project(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  demo: {packages: [numpy]}\n")
    write(tmp_path / "mod.py", MOD)
    return tmp_path


def test_version_and_entry_points(tmp_path):
    from nbcore import __version__

    result = run_nbcore("--version")
    assert result.returncode == 0 and result.stdout.strip() == "nbcore " + __version__
    result = run_nbcore("--help")
    assert result.returncode == 0
    for command in ("plugins", "backends", "protocols", "envs", "install", "shell", "call", "bench", "doctor", "gc"):
        assert command in result.stdout
    script = os.path.join(sysconfig.get_path("scripts"), "nbcore")
    assert os.path.isfile(script), "the nbcore console script was not installed next to %s" % sys.executable
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "nbcore " + __version__


def test_backends_json():
    data = {b["name"]: b for b in cli_json("backends", "--json")}
    assert data["venv"]["available"] and data["venv"]["plugin"] == "nbcore"
    assert data["python"]["available"]
    for plugin in FIRST_PARTY:
        for name in plugin.backends:
            assert name in data
            if name not in get_registry().backends:
                assert not data[name]["available"] and data[name]["hint"] == "pip install ./" + plugin.folder
                assert data[name]["reason"] == "not installed (pip install ./%s)" % plugin.folder
    assert "shm-pickle" not in data, "protocols are not backends"
    for entry in data.values():
        assert set(entry) >= {"name", "plugin", "available", "reason"}


def test_backends_table():
    result = run_nbcore("backends")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].split() == ["NAME", "PLUGIN", "AVAILABLE", "REASON"]


def test_protocols_json():
    data = cli_json("protocols", "--json")
    assert data["protocol_list"] == ["tcp-pickle", "shm-pickle"]
    tcp = {p["name"]: p for p in data["protocols"]}["tcp-pickle"]
    assert tcp["available"] and tcp["in_list"] and tcp["plugin"] == "nbcore"
    data = cli_json("protocols", "--json", env={"NERFBASELINES_PROTOCOL": "tcp-pickle"})
    assert data["protocol_list"] == ["tcp-pickle"]


def test_plugins_json():
    data = {p["name"]: p for p in cli_json("plugins", "--json")}
    venv = data["nbcore.builtin.venv"]
    assert venv["builtin"] and venv["backends"] == ["venv"] and venv["hooks"] == ["nbcore_register"]
    assert data["nbcore.builtin.tcp_pickle"]["protocols"] == ["tcp-pickle"]


@pytest.mark.parametrize("protocol", [[], ["--protocol", "tcp-pickle"]], ids=["default", "tcp-pickle"])
def test_call_on_venv_json(project, protocol):
    data = cli_json("call", "-c", "nbcore.yaml", "demo", "mod:f", "--args", "[2, 3]", "--backend", "venv", "--json",
                    *protocol, cwd=project)
    assert data["result"]["sum"] == 5
    assert data["result"]["python"] == list(sys.version_info[:2])
    assert data["backend"] == "venv"
    if protocol or not SHM_INSTALLED:
        assert data["protocol"].startswith("tcp-pickle")
    else:  # nb-shm is installed: the default list upgrades to it
        assert data["protocol"].startswith("shm-pickle")


def test_call_plain_output_and_kwargs(project):
    result = run_nbcore("call", "demo", "mod:f", "--kwargs", '{"a": "x", "b": "y"}', "--backend", "python", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("{'sum': 'xy'")


@pytest.mark.parametrize("variable", ["NBCORE_BACKEND", "NERFBASELINES_BACKEND"])
def test_backend_from_the_environment(project, variable):
    data = cli_json("call", "demo", "mod:f", "--args", "[1, 1]", "--json", cwd=project, env={variable: "python"})
    assert data["backend"] == "python"
    write(project / "nbcore.yaml", "backend: python\nenvironments:\n  demo: {packages: [numpy]}\n")
    data = cli_json("call", "demo", "mod:f", "--args", "[1, 1]", "--json", cwd=project)
    assert data["backend"] == "python"
    data = cli_json("call", "demo", "mod:f", "--args", "[1, 1]", "--json", "--backend", "venv", cwd=project,
                    env={variable: "python"})
    assert data["backend"] == "venv"


def test_call_error_shows_the_worker_traceback(project):
    result = run_nbcore("call", "demo", "mod:fail", "--args", '["x"]', "--backend", "venv", cwd=project)
    assert result.returncode == 1
    assert 'mod.py", line' in result.stderr and "raise ValueError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "nbcore: error: the call raised ValueError: no good: x"


@pytest.mark.parametrize("args, needle", [
    (["call", "demo", "mod:f", "--args", "[1,"], "--args is not valid JSON"),
    (["call", "demo", "mod:f", "--args", "{}"], "--args must be a JSON list"),
    (["call", "nope", "mod:f"], "environment 'nope' is not defined"),
    (["install", "demo", "--backend", "nosuch"], "unknown backend 'nosuch'; installed backends: "),
])
def test_user_errors_are_one_line(project, args, needle):
    result = run_nbcore(*args, cwd=project)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_lock_on_a_backend_without_lock_files_is_a_one_line_error(project):
    result = run_nbcore("lock", "demo", "--backend", "python", cwd=project)
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("nbcore: error: the python backend cannot write lock files (nbcore lock); backends that "
                            "can: "), result.stderr
    assert not (project / "demo.lock").exists()


def test_missing_backend_names_its_package(project):
    """Whatever is installed here: with plugin autoloading off, every known plugin backend is missing."""
    for plugin in FIRST_PARTY:
        for name in plugin.backends:
            result = run_nbcore("install", "demo", "--backend", name, cwd=project,
                                env={"NBCORE_DISABLE_PLUGIN_AUTOLOAD": "1"})
            hint = "pip install %s" % (REPO_ROOT / plugin.folder)  # outside the checkout: its absolute path
            assert result.returncode == 2 and hint in result.stderr, result.stderr


def test_install_envs_and_shell(project):
    result = run_nbcore("install", "demo", "--backend", "venv", cwd=project)
    assert result.returncode == 0, result.stderr
    envs = [e for e in cli_json("envs", "--json") if e["name"] == "demo" and e["backend"] == "venv"]
    assert envs and all(e["ready"] for e in envs)
    result = run_nbcore("shell", "demo", "--backend", "venv", "--", "python", "-c",
                        "import numpy, os, sys; print(sys.prefix); print(os.getcwd())", cwd=project)
    assert result.returncode == 0, result.stderr
    prefix, cwd = result.stdout.split()
    assert prefix in {e["path"] + "/venv" for e in envs}
    assert os.path.realpath(cwd) == os.path.realpath(str(project))
    result = run_nbcore("shell", "demo", "--backend", "venv", "--", "sh", "-c", "exit 3", cwd=project)
    assert result.returncode == 3


def test_envs_backend_lists_only_that_backends_environments(tmp_path):
    home = tmp_path / "home"
    for backend, name in (("venv", "a"), ("docker", "b"), ("venv", "c")):
        folder = home / "envs" / backend / ("%s-0123456789ab" % name)
        folder.mkdir(parents=True)
        write(folder / "nbcore-env.json", json.dumps({"name": name, "backend": backend, "hash": "0123456789ab"}))
    env = {"NBCORE_HOME": str(home)}
    assert [e["name"] for e in cli_json("envs", "--backend", "venv", "--json", env=env)] == ["a", "c"]
    assert sorted(e["name"] for e in cli_json("envs", "--json", env=env)) == ["a", "b", "c"]
    table = run_nbcore("envs", "--backend", "docker", env=env).stdout.splitlines()
    assert table[0].split() == ["NAME", "BACKEND", "HASH", "READY", "SIZE", "PATH"] and len(table) == 2
    result = run_nbcore("envs", "--backend", "nosuch", env=env)
    assert result.returncode == 2 and result.stderr.strip() == \
        "nbcore: error: unknown backend 'nosuch'; `nbcore backends` lists them", result.stderr


def test_envs_backend_shows_a_backends_own_listing_with_its_columns_first(monkeypatch, capsys):
    import types

    from nbcore.cli.main import main
    from nbcore.plugin import BackendProvider, registry as plugins

    class Listing(BackendProvider):
        name = "listing"
        environment_columns = ("node",)

        def check_available(self):
            return None

        def install(self, env, progress):
            pass

        def start_worker(self, env, launch):
            raise NotImplementedError

        def list_environments(self):
            record = {"name": "far", "backend": "venv", "hash": "0123456789abcdef", "path": "/far", "bytes": 2e6}
            return [dict(record, node="n1", ready=True), dict(record, name="half", node="n2", ready=False)]

    module = types.ModuleType("nbtest_listing_plugin")
    module.nbcore_register = plugins.hookimpl(lambda register: register.backend(Listing()))
    monkeypatch.setattr(plugins, "_registry", plugins.build_registry(plugins=[module], autoload=False))
    assert main(["envs", "--backend", "listing"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["NODE", "NAME", "BACKEND", "HASH", "READY", "SIZE", "PATH"]
    assert row.split() == ["n1", "far", "venv", "0123456789ab", "True", "2.0", "MB", "/far"]
    assert main(["envs", "--backend", "listing", "--all", "--json"]) == 0
    assert [e["node"] for e in json.loads(capsys.readouterr().out)] == ["n1", "n2"]


def test_verbose_logs_backend_and_protocol(project):
    result = run_nbcore("call", "-v", "demo", "mod:f", "--args", "[1, 2]", "--backend", "venv", "--protocol", "tcp-pickle",
                        cwd=project)
    assert result.returncode == 0, result.stderr
    assert "backend venv (requested)" in result.stderr
    assert "via tcp-pickle5-buffers" in result.stderr


def test_the_first_ctrl_c_says_at_once_that_the_call_is_being_cancelled(project):
    pid_file = project / "worker.pid"
    process = subprocess.Popen([sys.executable, "-m", "nbcore", "call", "demo", "mod:sleepy", "--args", json.dumps([str(pid_file)]),
                                "--backend", "venv"], cwd=str(project), env=clean_environ(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() else ""
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        deadline, line = time.monotonic() + 5, ""
        while "cancelling" not in line:  # (the install's lines come first)
            ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "nothing printed within 5 s of Ctrl-C"
            line = process.stderr.readline()
        assert process.poll() is None, "the call does not poll: it is still running"
        assert line == "nbcore: cancelling the call to mod:sleepy; press Ctrl-C again to stop the worker\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "cancelling" not in err, "said once"


def test_ctrl_c_twice_stops_the_call_and_its_worker(project):
    pid_file = project / "worker.pid"
    process = subprocess.Popen([sys.executable, "-m", "nbcore", "call", "demo", "mod:sleepy", "--args", json.dumps([str(pid_file)]),
                                "--backend", "venv"], cwd=str(project), env=clean_environ(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read() if process.poll() else ""
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "nbcore: interrupted"
    deadline = time.monotonic() + 5
    while pid_alive(worker):
        assert time.monotonic() < deadline, "the worker outlived the interrupted CLI"
        time.sleep(0.05)
