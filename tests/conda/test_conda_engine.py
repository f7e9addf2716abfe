"""The conda backend end to end: real conda prefixes made by the embedded engine from the local channel."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nbcore
from nbcore.host.launch import prepare, start
from nbcore.testing import engine_unavailable
from nbcore.plugin.store import READY_MARKER, ensure_installed
from nbcore.plugin import Progress

from nbtest import run_nbcore, write

pytestmark = pytest.mark.conda

TEST_MODULE = '''
import os
import sys


def info():
    import nbtest_tiny
    return {"prefix": sys.prefix, "executable": sys.executable, "tiny": nbtest_tiny.VALUE,
            "activated": os.environ.get("NBTEST_ACTIVATED"), "recorded": os.environ.get("NBTEST_RECORDED"),
            "path": os.environ["PATH"].split(os.pathsep), "conda_prefix": os.environ.get("CONDA_PREFIX")}


def read(path):
    with open(path) as f:
        return f.read()


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, array):
        import numpy as np

        return array * self.factor, np.ones(3, dtype=np.uint8) * self.factor
'''

CONFIG = '''
environments:
  cd-main:
    python: "3.11"
    conda:
      dependencies: [nbtest-activation]
      pip: [./wheels/nbtest_tiny-1.0-py3-none-any.whl]
      variables: {NBTEST_RECORDED: from-the-spec}
    install_script: |
      echo "$NBTEST_ACTIVATED|$(command -v python)|$(python -c 'import nbtest_tiny; print(nbtest_tiny.VALUE)')" \\
        > "$NBCORE_ENV_PATH/install-script-ran"
  cd-numpy:
    packages: [numpy]
  cd-bad:
    conda:
      dependencies: [nbtest-no-such-package]
'''


class Recorder(Progress):
    """A quiet progress that keeps every step, to count what an install did."""

    def __init__(self):
        super().__init__(quiet=True)
        self.steps = []

    def step(self, message):
        self.steps.append(message)
        super().step(message)


@pytest.fixture(scope="module")
def project(tmp_path_factory, nbcore_home, conda_channels, build_wheel):
    """A working directory with the test module, a wheel and an nbcore.yaml; the tests run inside it."""
    folder = tmp_path_factory.mktemp("conda-project")
    (folder / "nbconda_testmod.py").write_text(TEST_MODULE)
    build_wheel(folder / "wheels", "nbtest_tiny", "1.0", "VALUE = 42\n")
    (folder / "nbcore.yaml").write_text(CONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for name in ("NBCORE_BACKEND", "NBCORE_PROTOCOL", "NBCORE_CONFIG"):
            patch.delenv(name, raising=False)
        yield folder


@pytest.fixture(scope="module")
def main_env(project):
    """``cd-main`` built once for this module (rebuilt, so that its steps can be counted): (provider, env, steps)."""
    recorder = Recorder()
    config, provider, env = prepare("cd-main", "nbcore.yaml", backend="conda", install=False)
    assert ensure_installed(provider, env, recorder, force=True)
    return config, provider, env, recorder.steps


def group_members(pgid):
    """The live processes of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def prefix_of(env):
    return env.path / "prefix"


def packages_in(prefix):
    return sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))


def test_create_solves_links_and_runs_every_step(main_env):
    _, _, env, steps = main_env
    for expected in ("creating the conda prefix", "solving", "solved", "downloading into", "recording the activation",
                     "installing pip packages ./wheels/nbtest_tiny-1.0-py3-none-any.whl", "running install_script"):
        assert any(s.startswith(expected) for s in steps), (expected, steps)
    assert any("embedded engine (py-rattler" in s for s in steps), steps
    assert [p.split("-")[0] for p in packages_in(prefix_of(env))] == ["nbtest", "pip", "python"]


def test_second_open_builds_nothing(main_env):
    recorder = Recorder()
    _, provider, env = prepare("cd-main", "nbcore.yaml", backend="conda", progress=recorder)
    assert recorder.steps == []
    assert env.path == main_env[2].path and (env.path / READY_MARKER).is_file()


def test_worker_runs_inside_the_activated_prefix(main_env):
    config, provider, env, _ = main_env
    with start(config, provider, env) as remote:
        info = remote.call("nbconda_testmod:info")
    prefix = str(prefix_of(env))
    assert info["prefix"] == prefix and info["executable"].startswith(prefix + "/bin/")
    assert info["activated"] == "yes:" + prefix
    assert info["recorded"] == "from-the-spec" and info["conda_prefix"] == prefix
    assert info["path"][0] == prefix + "/bin"
    assert info["tiny"] == 42


def test_install_script_ran_activated(main_env):
    env = main_env[2]
    prefix = str(prefix_of(env))
    assert (env.path / "install-script-ran").read_text() == "yes:%s|%s/bin/python|42\n" % (prefix, prefix)


def test_protocol_is_shm_pickle_when_nb_shm_is_installed(main_env):
    config, provider, env, _ = main_env
    shm = nbcore.get_registry().protocols.get("shm-pickle")
    with start(config, provider, env) as remote:
        expected = "shm-pickle" if shm is not None and shm.check_available() is None else "tcp-pickle"
        assert remote.protocol.startswith(expected), remote.protocol


def test_shell_runs_the_command_activated(main_env, project):
    result = run_nbcore("shell", "cd-main", "--backend", "conda", "--", "bash", "-c",
                        'echo "$NBTEST_ACTIVATED"; command -v python', cwd=project)
    assert result.returncode == 0, result.stderr
    prefix = str(prefix_of(main_env[2]))
    assert result.stdout.splitlines() == ["yes:" + prefix, prefix + "/bin/python"]


def test_cli_call_reports_the_conda_backend(main_env, project):
    result = run_nbcore("call", "cd-main", "nbconda_testmod:read", "--args", '["nbcore.yaml"]', "--backend", "conda",
                        "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == "conda" and data["result"] == CONFIG


def test_generic_spec_is_chosen_automatically_and_returns_numpy_arrays(project):
    config, provider, env = prepare("cd-numpy", "nbcore.yaml", progress=Progress(quiet=True))
    assert provider.name == "conda"
    with start(config, provider, env) as remote:
        scaler = remote.remote("nbconda_testmod:Scaler")(3)
        scaled, ones = scaler.scale(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(scaled, np.arange(6).reshape(2, 3) * 3)
    assert ones.dtype == np.uint8 and list(ones) == [3, 3, 3]


def test_environment_yml_as_conda_writes_it(project, tmp_path, build_wheel):
    build_wheel(tmp_path, "nbtest_fromfile", "2.0", "VALUE = 'from the file'\n")
    write(tmp_path / "environment.yml", """
        name: some-name
        channels:
          - conda-forge
        dependencies:
          - python=3.11
          - nbtest-activation
          - pip
          - pip:
              - ./nbtest_fromfile-2.0-py3-none-any.whl
        variables:
          NBTEST_FROM_FILE: "yes"
    """)
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-file:
            conda: {environment_file: environment.yml}
    """)
    result = run_nbcore("shell", "cd-file", "--backend", "conda", "--", "python", "-c",
                        "import os, nbtest_fromfile; print(nbtest_fromfile.VALUE, os.environ['NBTEST_FROM_FILE'], "
                        "os.environ['NBTEST_ACTIVATED'] != '')", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the file yes True\n"


def test_package_cache_is_shared_and_follows_conda_pkgs_dirs(project, tmp_path, monkeypatch):
    monkeypatch.setenv("CONDA_PKGS_DIRS", str(tmp_path / "pkgs"))
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-cache-one:
            conda: {dependencies: [nbtest-activation]}
          cd-cache-two:
            conda: {variables: {ANOTHER: spec}}
    """)
    pythons = []
    for name in ("cd-cache-one", "cd-cache-two"):
        recorder = Recorder()
        _, _, env = prepare(name, str(tmp_path / "nbcore.yaml"), backend="conda", progress=recorder)
        assert "downloading into %s and linking" % (tmp_path / "pkgs") in " ".join(recorder.steps), recorder.steps
        pythons.append(os.stat(prefix_of(env) / "bin" / "python3.11"))
    assert (tmp_path / "pkgs" / "python-3.11.2-debian_0").is_dir()
    if pythons[0].st_dev == os.stat(tmp_path / "pkgs").st_dev:  # same file system: hard links, no copies
        assert pythons[0].st_ino == pythons[1].st_ino, "both prefixes link the one cached python"


def test_unsatisfiable_spec_is_a_one_line_error_naming_the_package(project, nbcore_home):
    result = run_nbcore("install", "cd-bad", "--backend", "conda", cwd=project)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("nbcore: error: the conda solve failed") and "nbtest-no-such-package" in errors[0]
    assert "Traceback" not in result.stderr
    assert not list((Path(nbcore_home) / "envs" / "conda").glob("cd-bad-*/"))


def test_failing_step_is_named_with_its_last_output(project, tmp_path):
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-fails:
            install_script: |
              echo "first line of the log"
              echo "the cause" >&2
              exit 3
    """)
    result = run_nbcore("install", "cd-fails", "--backend", "conda", cwd=tmp_path)
    assert result.returncode != 0
    error = result.stderr[result.stderr.index("nbcore: error:"):]
    assert error.splitlines()[:3] == ["nbcore: error: running install_script failed (exit code 3): the cause",
                                      "  | first line of the log", "  | the cause"], result.stderr


def test_solve_limit_is_enforced(project):
    result = run_nbcore("install", "cd-bad", "--backend", "conda", cwd=project,
                        env={"NBCORE_CONDA_SOLVE_TIMEOUT": "0.000001"})
    assert result.returncode != 0
    assert "nbcore: error: the conda solve did not finish within 1e-06 s (NBCORE_CONDA_SOLVE_TIMEOUT)" in result.stderr


def test_lock_file_is_written_and_installed_with_no_solve(main_env, project, tmp_path):
    env = main_env[2]
    result = run_nbcore("lock", "cd-main", "--backend", "conda", "-o", tmp_path / "cd-main.lock", cwd=project)
    assert result.returncode == 0, result.stderr
    lock = tmp_path / "cd-main.lock"
    assert "wrote 4 packages of cd-main to %s" % lock in result.stderr
    text = lock.read_text()
    assert "sha256" in text and "nbtest_tiny-1.0-py3-none-any.whl" in text
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-locked:
            conda: {lock_file: cd-main.lock}
    """)
    recorder = Recorder()
    _, locked_provider, locked = prepare("cd-locked", str(tmp_path / "nbcore.yaml"), backend="conda", progress=recorder)
    assert not any(s.startswith("solving") for s in recorder.steps), recorder.steps
    assert any("from the lock file %s (no solve)" % lock in s for s in recorder.steps), recorder.steps
    assert "installing 1 pip packages from the lock file" in recorder.steps
    assert packages_in(prefix_of(locked)) == packages_in(prefix_of(env))
    probe = subprocess.run([str(prefix_of(locked) / "bin" / "python"), "-c", "import nbtest_tiny; print(nbtest_tiny.VALUE)"],
                           capture_output=True, text=True)
    assert probe.stdout == "42\n", probe.stderr


def test_capability_builds_a_prefix_through_the_callers_runner(project, tmp_path):
    from nbcore.plugin import EnvironmentSpec

    builder = nbcore.get_registry().capability("conda-prefix")
    spec = EnvironmentSpec.from_dict({"conda": {"dependencies": ["nbtest-activation"]},
                                      "install_script": "echo \"$NBTEST_ACTIVATED $NBTEST_EXTRA\" > script-ran"},
                                     base_dir=str(tmp_path))
    calls = []

    def run(argv, variables, cwd, step):
        calls.append(step)
        subprocess.run(argv, env=variables, cwd=str(cwd), check=True)

    prefix = tmp_path / "prefix"
    builder.build(spec, prefix, Progress(quiet=True), run=run, base={"PATH": "/usr/bin:/bin", "HOME": "/nowhere"},
                  variables={"NBTEST_EXTRA": "extra"})
    assert calls == ["recording the activation (activate.d scripts)", "running install_script"]
    assert (tmp_path / "script-ran").read_text() == "yes:%s extra\n" % prefix
    assert builder.is_built(prefix)
    variables = builder.activation(prefix, base={"PATH": "/opt/container/bin"})
    assert variables["PATH"] == "%s/bin:/opt/container/bin" % prefix
    assert variables["NBTEST_ACTIVATED"] == "yes:%s" % prefix and "HOME" not in variables


def test_unreadable_lock_file_is_a_one_line_error(project, tmp_path):
    write(tmp_path / "broken.lock", "version: 7\nplatforms: [[[\n")
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-broken-lock:
            conda: {lock_file: broken.lock}
    """)
    result = run_nbcore("install", "cd-broken-lock", "--backend", "conda", cwd=tmp_path)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("nbcore: error: cannot read the lock file %s: " % (tmp_path / "broken.lock")), result.stderr


def test_two_installers_at_once_build_once(project, tmp_path):
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-race:
            install_script: |
              echo built >> build-count
              sleep 1
    """)
    processes = [subprocess.Popen([sys.executable, "-m", "nbcore", "install", "cd-race", "--backend", "conda"],
                                  cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert (tmp_path / "build-count").read_text() == "built\n"
    assert sum("another process is installing cd-race" in err for _, err in outputs) == 1, outputs


def test_killed_installer_leaves_nothing_half_ready(project, tmp_path, nbcore_home):
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-killed:
            install_script: |
              touch started
              if [ -e hang ]; then sleep 300; fi
    """)
    (tmp_path / "hang").touch()
    installer = subprocess.Popen([sys.executable, "-m", "nbcore", "install", "cd-killed", "--backend", "conda"],
                                 cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and installer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "started").exists(), "the install script never started"
    os.killpg(installer.pid, signal.SIGKILL)
    installer.wait(timeout=30)
    deadline = time.monotonic() + 10
    while group_members(installer.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(installer.pid) == [], "the installer's children outlived it"
    folders = list((Path(nbcore_home) / "envs" / "conda").glob("cd-killed-*/"))
    assert len(folders) == 1 and not (folders[0] / READY_MARKER).exists()
    (tmp_path / "hang").unlink()
    result = run_nbcore("install", "cd-killed", "--backend", "conda", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removing the unfinished environment" in result.stderr
    assert (folders[0] / READY_MARKER).is_file()


@pytest.mark.parametrize("frontend", ["micromamba", "mamba", "conda"])
def test_frontend_end_to_end_when_installed(frontend, project, tmp_path, monkeypatch):
    from nb_conda.engines import find_frontends

    if frontend not in find_frontends():  # an engine of its own: NBCORE_REQUIRE_ENGINES=micromamba-frontend,...
        engine_unavailable(frontend + "-frontend", "%s is not installed here (MAMBA_EXE, CONDA_EXE, PATH)" % frontend)
    monkeypatch.setenv("NBCORE_CONDA_ENGINE", frontend)
    write(tmp_path / "nbcore.yaml", """
        environments:
          cd-frontend:
            conda: {dependencies: [nbtest-activation]}
    """)
    config, provider, env = prepare("cd-frontend", str(tmp_path / "nbcore.yaml"), backend="conda",
                                    progress=Progress(quiet=True))
    with start(config, provider, env) as remote:
        assert remote.call("os:getenv", "NBTEST_ACTIVATED") == "yes:%s" % prefix_of(env)
