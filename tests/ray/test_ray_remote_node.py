"""An environment placed on a Ray node by resource behaves as a local one; the node builds it in its own home."""
import threading
import time

import numpy as np
import pytest

import nbcore
from nbcore.worker import CancelledError

pytestmark = pytest.mark.ray


def test_env_on_second_node_calls_proxies_generators_frames(ray_cluster, project, ray_config):
    with nbcore.open_backend("e", config=ray_config("nodeB")) as env:
        assert env.backend == "ray"
        assert env.protocol.startswith("tcp-pickle")  # another node: no shared memory offered
        info = env.call("raymod:where")
        frame = env.call("raymod:frame", 1_000_000)
        assert frame.dtype == np.float32 and frame[-1] == 999_999
        assert env.call("raymod:total", np.ones(1000, dtype=np.float64)) == 1000.0
        counter = env.remote("raymod:Counter")(10)
        assert counter.add(5) == 15 and counter.add(1) == 16
        assert list(env.remote("raymod:count")(4)) == [0, 1, 2, 3]
        assert env.call("os.path:exists", "raymod.py") and not env.call("os.path:exists", "ignored")
    home_b = ray_cluster.homes["nodeB"]
    assert info["python"].startswith(str(home_b / "envs" / "venv")), "built under the second node's NBCORE_HOME"
    assert info["cwd"].startswith(str(home_b / "ray" / "project")) and info["cwd"] != str(project), "project shipped"


def test_cancel_reaches_a_worker_on_another_node(ray_cluster, project, ray_config):
    with nbcore.open_backend("e", config=ray_config("nodeB")) as env:
        def cancel_soon():
            deadline = time.monotonic() + 30
            while env.connection.current_call is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            env.connection.cancel(env.connection.current_call)

        threading.Thread(target=cancel_soon, daemon=True).start()
        with pytest.raises(CancelledError):
            env.call("raymod:wait_for_cancel", 60)
        assert env.call("raymod:total", np.arange(4)) == 6.0  # the environment stays usable


def test_two_envs_at_once_on_different_nodes_and_shm_on_the_hosts_node(ray_cluster, project, ray_config):
    pytest.importorskip("nb_shm", reason="nb-shm is not installed")
    config = ray_config("nodeA", name="on_a")
    config["environments"].update(ray_config("nodeB", name="on_b")["environments"])
    opened, errors = {}, []

    def open_env(name):
        try:
            opened[name] = nbcore.open_backend(name, config=config)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_env, args=(name,)) for name in ("on_a", "on_b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    try:
        assert not errors, errors
        where = {name: env.call("raymod:where") for name, env in opened.items()}
        assert where["on_a"]["python"].startswith(str(ray_cluster.homes["nodeA"]))
        assert where["on_b"]["python"].startswith(str(ray_cluster.homes["nodeB"]))
        assert opened["on_a"].protocol.startswith("shm-pickle"), "the host's own node shares memory"
        assert opened["on_b"].protocol.startswith("tcp-pickle")
        big = opened["on_a"].call("raymod:frame", 2_000_000)
        assert big[-1] == 1_999_999
    finally:
        for env in opened.values():
            env.close()


def test_the_hosts_folder_is_used_where_the_node_has_it(ray_cluster, project, ray_config, monkeypatch):
    monkeypatch.setenv("NBCORE_RAY_SHIP_PROJECT", "0")
    with nbcore.open_backend("e", config=ray_config("nodeB")) as env:
        assert env.call("raymod:where")["cwd"] == str(project)


def test_opening_one_env_twice_at_once_builds_it_once_on_the_node(ray_cluster, project, ray_config):
    config = ray_config("nodeB", name="once", packages=())
    builds = ray_cluster.root / "once-builds.txt"
    config["environments"]["once"]["install_script"] = "echo built >> %s" % builds
    opened, errors = [], []

    def open_env():
        try:
            opened.append(nbcore.open_backend("once", config=config))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_env) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    try:
        assert not errors and len(opened) == 2, errors
        assert builds.read_text().splitlines() == ["built"]
    finally:
        for env in opened:
            env.close()


CONDA_MODULE = '''
import os
import sys


def where():
    return {"prefix": sys.prefix, "conda_prefix": os.environ.get("CONDA_PREFIX")}
'''


def test_a_conda_env_is_built_on_the_node_by_its_conda_backend(ray_cluster, project, conda_on_nodes):
    (project / "condamod.py").write_text(CONDA_MODULE)
    config = {"environments": {"c": {"python": "3.11", "conda": {},
                                     "ray": {"backend": "conda", "num_cpus": 0, "resources": {"nodeB": 0.01}}}}}
    with nbcore.open_backend("c", config=config) as env:
        where = env.call("condamod:where")
    prefix = where["prefix"]
    assert prefix.startswith(str(ray_cluster.homes["nodeB"] / "envs" / "conda")), where
    assert where["conda_prefix"] == prefix, "the worker runs activated"
