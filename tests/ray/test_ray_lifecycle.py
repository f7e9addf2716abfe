"""What ends and what is left when a worker, its actor, its node or the host goes away."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import nbcore
from nbcore.errors import WorkerError

pytestmark = pytest.mark.ray

#: Seconds within which the host must report a lost worker.
REPORT_WITHIN = 20


def _call_in_thread(env, *args):
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            outcome["result"] = env.call(*args)
        except BaseException as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_killing_the_worker_mid_call_reports_exit_code_and_node(ray_cluster, project, ray_config, wait_until,
                                                               pid_alive):
    import ray

    env = nbcore.open_backend("e", config=ray_config("nodeB"))
    try:
        pid = env.call("raymod:where")["pid"]
        thread, outcome = _call_in_thread(env, "raymod:sleep", 60)
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        thread.join(REPORT_WITHIN)
        assert isinstance(outcome.get("error"), WorkerError), outcome
        message = str(outcome["error"])
        assert "exit code -9" in message and ray_cluster.node_ids["nodeB"][:12] in message, message
    finally:
        env.close()
    wait_until(lambda: ray_cluster.actor_resources_held(ray)["nodeB"] == 0, 30, "the actor to go")


def test_killing_the_actor_ends_the_worker_and_the_call(ray_cluster, project, ray_config, wait_until, pid_alive):
    import ray

    env = nbcore.open_backend("e", config=ray_config("nodeB"))
    try:
        pid = env.call("raymod:where")["pid"]
        thread, outcome = _call_in_thread(env, "raymod:sleep", 60)
        time.sleep(0.5)
        ray.kill(env.connection.process._placed.actor)
        thread.join(REPORT_WITHIN)
        assert isinstance(outcome.get("error"), WorkerError), outcome
        assert ray_cluster.node_ids["nodeB"][:12] in str(outcome["error"])
        wait_until(lambda: not pid_alive(pid), 10, "the worker to end with its actor")
    finally:
        env.close()
    wait_until(lambda: ray_cluster.actor_resources_held(ray)["nodeB"] == 0, 30, "the actor to go")


def test_stopping_the_second_node_mid_call(ray_cluster, project, ray_config, wait_until, pid_alive):
    import ray

    env = nbcore.open_backend("e", config=ray_config("nodeB"))
    try:
        pid = env.call("raymod:where")["pid"]
        thread, outcome = _call_in_thread(env, "raymod:sleep", 60)
        time.sleep(0.5)
        ray_cluster.stop_node("nodeB")
        thread.join(REPORT_WITHIN)
        assert isinstance(outcome.get("error"), WorkerError), outcome
        assert ray_cluster.node_ids["nodeB"][:12] in str(outcome["error"])
        wait_until(lambda: not pid_alive(pid), 10, "the worker to end with its node")
    finally:
        env.close()
        ray_cluster.stop_node("nodeB", ray)
        ray_cluster.start_node("nodeB")
        ray_cluster.wait_nodes(ray, 2)


HOST_SCRIPT = textwrap.dedent('''
    import sys, time
    import nbcore
    env = nbcore.open_backend("e", config=%r)
    print("worker pid", env.call("raymod:where")["pid"], flush=True)
    time.sleep(600)
''')


def test_host_death_ends_worker_and_actor(ray_cluster, project, ray_config, wait_until, pid_alive):
    import ray

    host = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT % (ray_config("nodeB"),)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        lines = iter(host.stdout.readline, "")  # Ray forwards cluster messages to a driver's stdout too
        line = next((line for line in lines if line.startswith("worker pid ")), "")
        assert line, "the host printed no worker pid (exit code %s)" % host.poll()
        pid = int(line.split()[-1])
        wait_until(lambda: ray_cluster.actor_resources_held(ray)["nodeB"] > 0, 10, "the host's actor")
        os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)
        wait_until(lambda: not pid_alive(pid), 30, "the worker to end with its host")
        wait_until(lambda: ray_cluster.actor_resources_held(ray)["nodeB"] == 0, 60, "the actor to end with its host")
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()


@pytest.mark.parametrize("sections, flags", [("ray: {backend: venv}", ["--backend", "ray"]),
                                             ("ray: {backend: venv}, venv: {}", [])],
                         ids=["backend-ray", "ray-section-beside-venv"])
def test_unreachable_cluster_is_one_line_with_the_address(project, tmp_path, sections, flags):
    """Named with --backend or placed by its ray: section alone, the environment never moves to a local backend."""
    config = tmp_path / "nbcore.yaml"
    config.write_text("environments:\n  e: {%s}\n" % sections)
    env = dict(os.environ, RAY_ADDRESS="127.0.0.1:9", NBCORE_HOME=str(tmp_path / "home"))
    env.pop("NBCORE_BACKEND", None)
    out = subprocess.run([sys.executable, "-m", "nbcore", "call", "-c", str(config), *flags, "e", "os:getpid"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:9" in lines[0] and "RAY_ADDRESS" in lines[0], out.stderr
    assert not (tmp_path / "home" / "envs").exists(), "nothing was built elsewhere"


def test_resources_no_node_has_fail_at_once_naming_the_nodes(ray_cluster, project, ray_config):
    with pytest.raises(nbcore.BackendUnavailable) as raised:
        nbcore.open_backend("e", config=ray_config("nodeC"))
    message = str(raised.value)
    assert "no node of the Ray cluster has nodeC=0.01" in message and "nodeB=1" in message and "\n" not in message
