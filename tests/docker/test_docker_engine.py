"""The docker backend end to end, against the real Docker engine (no mock of the daemon)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import nbcore
from nbcore.testing import engine_unavailable, read_line
from nbcore.host.launch import prepare, start
from nbcore.plugin.progress import Progress
from nbcore.plugin.store import ensure_installed

from nbtest import SHM_INSTALLED, run_nbcore

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]  # the first test builds an image

#: The container shares the host's IPC and network namespaces, so nb-shm, when installed, upgrades.
EXPECTED_PROTOCOL = "shm-pickle5-buffers" if SHM_INSTALLED else "tcp-pickle5-buffers"


def open_env(name, **kwargs):
    config, provider, env = prepare(name, "nbcore.yaml", backend="docker", progress=Progress(quiet=True))
    return start(config, provider, env, **kwargs)


def worker_containers(api, env_name):
    return api.containers(all=True, filters={"label": "org.nbcore.env=%s" % env_name})


@pytest.fixture(scope="module")
def main_env(project):
    """``dk-main`` installed once for the module: the first install builds it (or finds it ready)."""
    started = time.monotonic()
    config, provider, env = prepare("dk-main", "nbcore.yaml", backend="docker", install=False)
    ensure_installed(provider, env, Progress())
    return config, provider, env, time.monotonic() - started


def test_install_builds_a_labelled_image_and_second_install_is_a_cache_hit(main_env, docker_api, monkeypatch):
    import docker

    config, provider, env, _ = main_env
    settings, plan = provider.plan(env)
    assert plan.built and plan.tag.startswith("nbcore/dk-main:")
    image = docker_api.inspect_image(plan.tag)
    labels = image["Config"]["Labels"]
    assert labels["org.nbcore.env"] == "dk-main"
    assert labels["org.nbcore.spec-hash"] == env.spec_hash
    assert labels["org.nbcore.version"] == nbcore.__version__
    builds = []
    original_build = docker.APIClient.build
    monkeypatch.setattr(docker.APIClient, "build", lambda self, *a, **k: builds.append(k) or original_build(self, *a, **k))
    assert ensure_installed(provider, env, Progress(quiet=True)) is False
    assert builds == [], "the second install built again"
    assert docker_api.inspect_image(plan.tag)["Id"] == image["Id"]


def test_function_and_remote_class_return_numpy_arrays(main_env):
    with open_env("dk-main") as env:
        assert env.backend == "docker"
        assert env.worker_python.startswith("3.11.")
        arrays, index = env.call("nbdocker_testmod:frames", 3)
        assert [a.shape for a in arrays] == [(4, 5)] * 3 and arrays[2][0, 0] == 2
        np.testing.assert_array_equal(index, np.arange(3))
        scaler = env.remote("nbdocker_testmod:Scaler")(3)
        scaled, ones = scaler.scale(np.arange(6, dtype=np.float64).reshape(2, 3))
        np.testing.assert_array_equal(scaled, np.arange(6).reshape(2, 3) * 3)
        assert ones.dtype == np.uint8 and list(ones) == [3, 3, 3]
        assert env.call("nbdocker_testmod:read", "/etc/nbcore-build-script-ran") == "ran as 0\n"
        assert env.call("nbdocker_testmod:read", "/opt/nbcore-env/install-script-ran") == "numpy importable\n"


def test_protocol_is_shm_pickle_when_nb_shm_is_installed(main_env):
    with open_env("dk-main") as env:
        assert env.protocol == EXPECTED_PROTOCOL
        big = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
        scaled, _ = env.remote("nbdocker_testmod:Scaler")(2).scale(big)
        np.testing.assert_array_equal(scaled, big * 2)


def test_cli_call_reports_backend_and_protocol(main_env, project):
    result = run_nbcore("call", "dk-main", "nbdocker_testmod:sleep", "--args", "[0]", "--backend", "docker",
                        "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backend"] == "docker" and data["result"] == 0
    assert data["protocol"] == EXPECTED_PROTOCOL


def test_worker_runs_as_the_invoking_user_in_the_mounted_cwd(main_env, project):
    with open_env("dk-main") as env:
        info = env.call("nbdocker_testmod:info")
        path = env.call("nbdocker_testmod:write", "written-by-worker.txt", "hello")
    assert info["cwd"] == str(project)
    assert (info["uid"], info["gid"]) == (os.getuid(), os.getgid())
    assert info["pip_cert"] and info["ca_readable"]
    stat = os.stat(path)
    assert path == str(project / "written-by-worker.txt")
    assert (stat.st_uid, stat.st_gid) == (os.getuid(), os.getgid())


def test_configured_user_owns_the_files_it_writes(project):
    with open_env("dk-user") as env:
        info = env.call("nbdocker_testmod:info")
        path = env.call("nbdocker_testmod:write", "written-by-4321.txt", "hello")
    assert (info["uid"], info["gid"], info["home"]) == (4321, 4321, "/tmp")
    stat = os.stat(path)
    assert (stat.st_uid, stat.st_gid) == (4321, 4321)


def test_killed_container_gives_a_clean_error_and_leaves_nothing(main_env, docker_api):
    with open_env("dk-main") as env:
        container_id = env.connection.process.container_id

        def kill_soon():
            time.sleep(1.0)
            docker_api.kill(container_id)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        started = time.monotonic()
        with pytest.raises(nbcore.WorkerError, match="exit code 137"):
            env.call("nbdocker_testmod:sleep", 60)
        killer.join()
        assert time.monotonic() - started < 15
    deadline = time.monotonic() + 10
    while worker_containers(docker_api, "dk-main") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_containers(docker_api, "dk-main") == []


def test_worker_container_is_removed_after_close(main_env, docker_api):
    with open_env("dk-main") as env:
        assert len(worker_containers(docker_api, "dk-main")) == 1
        env.call("nbdocker_testmod:sleep", 0)
    assert worker_containers(docker_api, "dk-main") == []


def test_ready_image_runs_as_is_and_is_not_removed(project, docker_api):
    config, provider, env = prepare("dk-ready", "nbcore.yaml", backend="docker", progress=Progress(quiet=True))
    assert not provider.plan(env)[1].built
    with start(config, provider, env) as remote:
        assert remote.call("platform:python_version").startswith("3.11.")
    provider.remove(env)
    assert docker_api.inspect_image("nbcore-ci/python:3.11")


@pytest.mark.parametrize("python", ["3.13", "3.9"])
def test_worker_on_another_python_than_the_host(project, docker_api, python):
    from nb_docker.images import image_exists

    if not image_exists(docker_api, "nbcore-ci/python:" + python):
        engine_unavailable("docker", "base image nbcore-ci/python:%s is missing: run scripts/provision-docker" % python)
    spec = {"python": python, "packages": ["numpy"], "backends": ["docker"]}
    config = {"environments": {"dk-py" + python.replace(".", ""): spec}}
    name = next(iter(config["environments"]))
    config_obj, provider, env = prepare(name, config, backend="docker", progress=Progress(quiet=True))
    with start(config_obj, provider, env) as remote:
        assert remote.worker_python.startswith(python + ".")
        assert remote.call("nbdocker_testmod:info")["python"].startswith(python + ".")
        arrays, index = remote.call("nbdocker_testmod:frames", 2)
        np.testing.assert_array_equal(arrays[1], np.ones((4, 5), dtype=np.float32))
        scaled, _ = remote.remote("nbdocker_testmod:Scaler")(2).scale(np.arange(4.0))
        np.testing.assert_array_equal(scaled, np.arange(4.0) * 2)
        assert remote.protocol == EXPECTED_PROTOCOL


def test_build_error_names_the_failing_step_and_its_log(project):
    config = {"environments": {"dk-broken": {"docker": {"build_script": "echo about to fail\nexit 3\n"}}}}
    with pytest.raises(nbcore.InstallError) as raised:
        prepare("dk-broken", config, backend="docker", progress=Progress(quiet=True))
    message = str(raised.value)
    assert "at Step " in message and "build_script.sh" in message
    assert "about to fail" in message and "non-zero code: 3" in message


def test_python_mismatch_with_the_base_image_fails_clearly(project):
    config = {"environments": {"dk-mismatch": {"python": "3.12", "docker": {"image": "nbcore-ci/python:3.11"},
                                               "install_script": "true"}}}
    with pytest.raises(nbcore.InstallError, match="has Python 3.11.* asks for 3.12"):
        prepare("dk-mismatch", config, backend="docker", progress=Progress(quiet=True))


def test_new_build_removes_the_old_tag_and_remove_deletes_the_image(project, docker_api):
    def install(script):
        config = {"environments": {"dk-retag": {"install_script": script}}}
        return prepare("dk-retag", config, backend="docker", progress=Progress(quiet=True))

    _, provider, first = install("echo one")
    old_tag = provider.plan(first)[1].tag
    _, provider, second = install("echo two")
    new_tag = provider.plan(second)[1].tag
    assert old_tag != new_tag
    tags = [t for image in docker_api.images(name="nbcore/dk-retag") for t in image["RepoTags"]]
    assert tags == [new_tag]
    provider.remove(second)
    assert docker_api.images(name="nbcore/dk-retag") == []
    assert not second.path.exists()


def test_shell_runs_a_command_in_the_worker_container_setup(main_env, project):
    result = run_nbcore("shell", "dk-main", "--backend", "docker", "--", "sh", "-c",
                        'echo "$(id -u):$(pwd):$(python -c "import numpy; print(1)")"; exit 7', cwd=project)
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip() == "%d:%s:1" % (os.getuid(), project)


def test_unreachable_daemon_is_reported_and_install_fails_in_one_line(project, tmp_path):
    dead = {"DOCKER_HOST": "unix://%s" % (tmp_path / "no-daemon.sock")}
    listed = run_nbcore("backends", "--json", env=dead, cwd=project)
    assert listed.returncode == 0, listed.stderr
    docker = next(b for b in json.loads(listed.stdout) if b["name"] == "docker")
    assert docker["available"] is False
    assert "cannot reach the Docker daemon" in docker["reason"] and "no-daemon.sock" in docker["reason"]
    started = time.monotonic()
    installed = run_nbcore("install", "dk-main", "--backend", "docker", env=dead, cwd=project)
    assert installed.returncode != 0
    lines = installed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbcore: error:") and "Docker daemon" in lines[0], lines
    assert time.monotonic() - started < 20


def test_container_does_not_outlive_a_killed_host(main_env, project, docker_api):
    script = project / "host_then_die.py"
    script.write_text(
        "import sys, time\n"
        "from nbcore import open_backend\n"
        "env = open_backend('dk-main', 'nbcore.yaml', backend='docker')\n"
        "print(env.connection.process.container_id, flush=True)\n"
        "time.sleep(120)\n")
    host = subprocess.Popen([sys.executable, str(script)], cwd=str(project), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        container_id = read_line(host.stdout, timeout=120).strip()
        assert docker_api.inspect_container(container_id)["State"]["Running"]
    finally:
        host.send_signal(signal.SIGKILL)
        host.wait()
    deadline = time.monotonic() + 15
    while worker_containers(docker_api, "dk-main") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_containers(docker_api, "dk-main") == []


def test_missing_image_is_pulled_and_a_failed_pull_is_one_clear_error(project):
    config = {"environments": {"dk-unpullable": {"docker": {"image": "nbcore-ci/not-built-anywhere:1"}}}}
    with pytest.raises(nbcore.InstallError) as raised:
        prepare("dk-unpullable", config, backend="docker", progress=Progress(quiet=True))
    message = str(raised.value)
    assert message.startswith("pulling image nbcore-ci/not-built-anywhere:1 failed:")
    assert "could not be pulled" in message and "\n" not in message


def test_gpu_request_without_gpus_fails_to_start_with_a_hint(project, docker_api):
    from nbcore.plugin.containers import nvidia_gpus_present as gpu_devices_present

    if gpu_devices_present():
        pytest.skip("this host has NVIDIA GPUs")
    config = {"environments": {"dk-gpu": {"docker": {"image": "nbcore-ci/python:3.11", "gpus": True}}}}
    config_obj, provider, env = prepare("dk-gpu", config, backend="docker", progress=Progress(quiet=True))
    with pytest.raises(nbcore.WorkerError, match="could not start the worker container.*gpus: false"):
        start(config_obj, provider, env)
    assert worker_containers(docker_api, "dk-gpu") == []
