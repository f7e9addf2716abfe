"""The apptainer backend end to end, against the real Apptainer (no mock of the engine)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import nbcore
from nbcore.host.launch import prepare
from nbcore.plugin.store import ensure_installed

from innertest import CountingProgress, one_error_line, open_env
from nbtest import pid_alive, run_nbcore

#: The first test installs every source (conversions and builds take minutes on a busy machine).
pytestmark = [pytest.mark.apptainer, pytest.mark.timeout(900)]

SOURCES = ("ap-sandbox", "ap-sif", "ap-daemon", "ap-archive", "ap-remote", "ap-built")


@pytest.fixture(scope="module")
def installed(project):
    """Every environment of :data:`SOURCES` installed once, with the steps each first install announced."""
    steps = {}
    for name in SOURCES:
        config, provider, env = prepare(name, "nbcore.yaml", backend="apptainer", install=False)
        progress = CountingProgress()
        ensure_installed(provider, env, progress)
        steps[name] = (provider, env, progress.steps)
    return steps


@pytest.mark.parametrize("name", SOURCES)
def test_function_and_remote_class_return_numpy_arrays(installed, name):
    with open_env(name) as env:
        assert env.backend == "apptainer"
        assert env.worker_python.startswith("3.11.")
        arrays, index = env.call("nbapptainer_testmod:frames", 3)
        assert [a.shape for a in arrays] == [(4, 5)] * 3 and arrays[2][0, 0] == 2
        np.testing.assert_array_equal(index, np.arange(3))
        scaled, ones = env.remote("nbapptainer_testmod:Scaler")(3).scale(np.arange(6, dtype=np.float64).reshape(2, 3))
        np.testing.assert_array_equal(scaled, np.arange(6).reshape(2, 3) * 3)
        assert ones.dtype == np.uint8 and list(ones) == [3, 3, 3]


@pytest.mark.parametrize("name", SOURCES)
def test_second_install_is_a_cache_hit(installed, name):
    provider, env, first_steps = installed[name]
    progress = CountingProgress()
    assert ensure_installed(provider, env, progress) is False
    assert progress.steps == []
    _, again = prepare(name, "nbcore.yaml", backend="apptainer", install=False)[1:]
    assert again.spec_hash == env.spec_hash and provider.is_installed(again)


def test_sources_run_in_place_or_are_converted_once_to_a_cached_sif(installed, nbcore_home):
    for name in ("ap-sandbox", "ap-sif"):
        provider, env, steps = installed[name]
        assert steps == [] and provider.plan(env).runs.image == env.spec.section("apptainer")["image"]
    for name in ("ap-daemon", "ap-archive", "ap-remote"):
        provider, env, steps = installed[name]
        image = Path(provider.plan(env).runs.image)
        assert image.suffix == ".sif" and image.is_file()
        assert image.parent == Path(nbcore_home) / "cache" / "apptainer" / "images"
        assert [s for s in steps if s.startswith("converting ")] == steps and len(steps) == 1


def test_built_sif_runs_the_build_and_install_scripts_and_is_named_by_content(installed):
    provider, env, steps = installed["ap-built"]
    plan = provider.plan(env).runs
    assert plan.built and Path(plan.image).is_file() and Path(plan.image).parent == env.path
    assert any(s.startswith("building ") for s in steps)
    with open_env("ap-built") as remote:
        assert remote.call("nbapptainer_testmod:read", "/etc/nbcore-build-script-ran") == "ran as 0\n"
        assert remote.call("nbapptainer_testmod:read", "/opt/nbcore-env/install-script-ran") == "numpy importable\n"
        environ = remote.call("nbapptainer_testmod:info")["environ"]
    assert environ["VIRTUAL_ENV"] == "/opt/nbcore-env"
    assert environ["PIP_CERT"] == "/etc/nbcore/ca-certificates.crt"
    assert not list(env.path.glob(".build-*")) and not list(env.path.glob("*.partial")), "build files left behind"


def test_worker_gets_a_clean_environment_a_private_home_and_the_cwd(installed, project, monkeypatch):
    monkeypatch.setenv("NBCORE_TEST_LEAK", "must-not-arrive")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with open_env("ap-sif") as env:
        info = env.call("nbapptainer_testmod:info")
        path = env.call("nbapptainer_testmod:write", "written-by-worker.txt", "hello")
    assert info["cwd"] == str(project)
    assert "NBCORE_TEST_LEAK" not in info["environ"] and info["environ"]["OMP_NUM_THREADS"] == "3"
    assert info["home"] == os.path.expanduser("~") and info["home_entries"] == []
    assert info["ca_readable"]
    assert (info["uid"], info["gid"]) == (os.getuid(), os.getgid())
    stat = os.stat(path)
    assert path == str(project / "written-by-worker.txt")
    assert (stat.st_uid, stat.st_gid) == (os.getuid(), os.getgid())


def test_protocol_is_shm_pickle_when_nb_shm_is_installed(installed):
    shm = nbcore.get_registry().protocols.get("shm-pickle")
    assert shm is not None, "nb-shm must be installed for the apptainer tests"
    with open_env("ap-sif") as env:
        assert env.protocol.startswith("shm-pickle"), env.protocol
        big = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
        scaled, _ = env.remote("nbapptainer_testmod:Scaler")(2).scale(big)
        np.testing.assert_array_equal(scaled, big * 2)


def test_start_up_noise_is_not_shown_as_worker_output(installed, project):
    result = run_nbcore("call", "ap-sif", "nbapptainer_testmod:sleep", "--args", "[0]", "--backend", "apptainer",
                        "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == "apptainer" and data["result"] == 0
    assert "gocryptfs" not in result.stderr


def test_killed_worker_gives_a_clean_error_and_leaves_nothing(installed):
    with open_env("ap-sif") as env:
        pid = env.call("nbapptainer_testmod:info")["pid"]
        process = env.connection.process
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        started = time.monotonic()
        with pytest.raises(nbcore.WorkerError):
            env.call("nbapptainer_testmod:sleep", 60)
        killer.join()
        assert time.monotonic() - started < 15
    assert process.wait(10) is not None
    assert not pid_alive(pid) and not pid_alive(process.process.pid)


def test_shell_runs_a_command_in_the_worker_setup(installed, project):
    result = run_nbcore("shell", "ap-sif", "--backend", "apptainer", "--", "sh", "-c", "pwd; echo $HOME; id -u",
                        cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(project), os.path.expanduser("~"), str(os.getuid())]


def test_spec_whose_image_is_missing_falls_back_to_conda_on_the_generic_image(project, conda_channel):
    config, provider, env = prepare("ap-conda", "nbcore.yaml", backend="apptainer", install=False)
    progress = CountingProgress()
    ensure_installed(provider, env, progress)
    fallback = [s for s in progress.steps if s.startswith("image docker-daemon://nbcore-ci/no-such-image:2 could not")]
    assert len(fallback) == 1, progress.steps
    assert fallback[0].endswith("; building the environment with conda on %s instead"
                                % env.spec.section("apptainer")["fallback_image"])
    prefix = env.path / "conda-prefix"
    assert (prefix / "conda-meta").is_dir()
    with open_env("ap-conda") as remote:
        assert remote.backend == "apptainer"
        where = remote.call("nbapptainer_condamod:where")
    assert where["prefix"] == where["conda_prefix"] == str(prefix)
    assert where["python"].startswith("3.11.") and where["activated"] == "yes:%s" % prefix
    assert ensure_installed(provider, env, CountingProgress()) is False


def test_missing_image_is_a_one_line_error(project):
    result = run_nbcore("install", "ap-missing", "--backend", "apptainer", cwd=project)
    assert result.returncode != 0
    assert one_error_line(result.stderr).startswith("nbcore: error: image /nonexistent/image.sif not found")


def test_failed_build_names_the_step_and_quotes_the_log_tail(project):
    result = run_nbcore("install", "ap-failing-build", "--backend", "apptainer", cwd=project)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("nbcore: error: "):]
    first, *tail = error.splitlines()
    assert first.startswith("nbcore: error: building ") and " failed: " in first
    assert tail[0] == "last lines of the log:" and any("about to fail" in line for line in tail)
    env_folders = list((Path(os.environ["NBCORE_HOME"]) / "envs" / "apptainer").glob("ap-failing-build-*"))
    assert not any(folder.is_dir() for folder in env_folders), "the half-built environment is removed"


def test_missing_docker_image_fails_with_the_engine_s_reason(project):
    result = run_nbcore("install", "ap-missing-daemon", "--backend", "apptainer", cwd=project)
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert line.startswith("nbcore: error: image docker-daemon://nbcore-ci/no-such-image:1 could not be converted")
    assert "reference does not exist" in line


def test_unusable_dev_fuse_is_a_one_line_error_naming_the_ways_out(installed, project):
    """An empty /dev (a tmpfs in a mount namespace of our own) has no /dev/fuse."""
    script = "mount -t tmpfs nbcore-test /dev && exec \"$@\""
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                             sys.executable, "-m", "nbcore", "call", "ap-sif", "nbapptainer_testmod:sleep",
                             "--args", "[0]", "--backend", "apptainer"],
                            cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert "cannot use /dev/fuse (it does not exist)" in line and "unsquash: true" in line and "sandbox" in line


def test_spython_drives_apptainer_on_a_host_without_singularity(engine, tmp_path, monkeypatch):
    """Only an ``apptainer`` on PATH: spython's ``singularity`` is made to be it."""
    from nb_apptainer import engine as engine_module

    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "apptainer").symlink_to(os.path.realpath(engine.executable))
    monkeypatch.setenv("PATH", str(folder))
    engine_module._probe.cache_clear()
    try:
        found = engine_module.require_engine()
    finally:
        engine_module._probe.cache_clear()
    assert found.executable == str(folder / "apptainer")
    assert (found.flavour, found.version) == ("apptainer", engine.version)


def _sha256(path):
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _rewrite_byte(path, value=None):
    """Write one byte in the middle of ``path`` under its old size and modification time; return the old byte."""
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(before.st_size // 2)
        old = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(value if value is not None else bytes([old[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return old


def test_install_records_the_sha256_of_the_sif_each_environment_runs(installed):
    for name in SOURCES:
        provider, env, _ = installed[name]
        record = env.path / "image-sha256.json"
        image = provider.plan(env).runs.image
        if os.path.isdir(image):
            assert not record.exists(), "a sandbox folder is not hashed"
        else:
            assert json.loads(record.read_text())["sha256"] == _sha256(image), name


def test_a_built_sif_changed_after_the_install_is_refused_at_start_in_one_line(installed, project):
    provider, env, _ = installed["ap-built"]
    image = provider.plan(env).runs.image
    call = ("call", "ap-built", "nbapptainer_testmod:sleep", "--args", "[0]", "--backend", "apptainer")
    old = _rewrite_byte(image)
    try:
        result = run_nbcore(*call, cwd=project)
        assert result.returncode != 0
        line = one_error_line(result.stderr)
        assert line.startswith("nbcore: error: the image %s of environment ap-built changed since it was installed"
                               % image)
        assert line.endswith("; reinstall it with nbcore install ap-built --force")
    finally:
        _rewrite_byte(image, old)
    result = run_nbcore(*call, cwd=project)
    assert result.returncode == 0, "the same content again runs: " + result.stderr


def test_a_changed_cached_sif_is_refused_at_start_and_converted_again_by_a_reinstall(installed, project):
    """Last in this module: ap-archive runs a converted SIF of its own again afterwards."""
    provider, env, _ = installed["ap-archive"]
    image = provider.plan(env).runs.image
    call = ("call", "ap-archive", "nbapptainer_testmod:sleep", "--args", "[0]", "--backend", "apptainer")
    _rewrite_byte(image)
    result = run_nbcore(*call, cwd=project)
    assert result.returncode != 0
    assert "changed since it was installed" in one_error_line(result.stderr)
    reinstall = run_nbcore("install", "ap-archive", "--backend", "apptainer", "--force", cwd=project)
    assert reinstall.returncode == 0, reinstall.stderr
    assert "the cached image %s changed since it was converted" % image in reinstall.stderr
    result = run_nbcore(*call, cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads((env.path / "image-sha256.json").read_text())["sha256"] == _sha256(image)
