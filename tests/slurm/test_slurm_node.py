"""An environment on a Slurm node behaves as a local one: the node builds it, the worker runs as a job step."""
import os
import sys
import threading
import time

import numpy as np
import pytest

import nbcore
from nbcore.worker import CancelledError

from nbtest import SHM_INSTALLED

pytestmark = pytest.mark.slurm


def test_env_on_n2_calls_proxies_generators_frames(slurm_cluster, project, slurm_config, nbcore_home):
    with nbcore.open_backend("e", config=slurm_config("n2")) as env:
        assert env.backend == "slurm"
        assert env.protocol.startswith("tcp-pickle")  # another node: no shared memory offered
        info = env.call("slurmmod:where")
        job = info["job"]
        assert (job, "RUNNING", "n2") in slurm_cluster.jobs()
        frame = env.call("slurmmod:frame", 8_300_000)  # 33 MB
        assert frame.dtype == np.float32 and frame[-1] == 8_299_999
        assert env.call("slurmmod:total", np.ones(1000, dtype=np.float64)) == 1000.0
        counter = env.remote("slurmmod:Counter")(10)
        assert counter.add(5) == 15 and counter.add(1) == 16
        assert list(env.remote("slurmmod:count")(4)) == [0, 1, 2, 3]
    assert info["node"] == "n2" and info["step"] not in (None, "batch")
    assert info["cwd"] == str(project), "the worker runs in the host's folder (shared filesystem)"
    assert info["python"].startswith(os.path.join(nbcore_home, "envs", "venv")), "built by the node's venv backend"
    slurm_cluster_wait_gone(slurm_cluster, job)


def slurm_cluster_wait_gone(cluster, job):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(j[0] == job for j in cluster.jobs()):
        time.sleep(0.1)
    assert not any(j[0] == job for j in cluster.jobs()), "close() ends the allocation"


def test_cancel_reaches_a_worker_on_n2(slurm_cluster, project, slurm_config):
    with nbcore.open_backend("e", config=slurm_config("n2")) as env:
        def cancel_soon():
            deadline = time.monotonic() + 30
            while env.connection.current_call is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            env.connection.cancel(env.connection.current_call)

        threading.Thread(target=cancel_soon, daemon=True).start()
        with pytest.raises(CancelledError):
            env.call("slurmmod:wait_for_cancel", 30)
        assert env.call("slurmmod:sleep", 0) == 0


def test_two_environments_on_two_nodes_at_once(slurm_cluster, project, slurm_config):
    # one environment spec on two nodes: built once (shared NBCORE_HOME), a worker and an allocation on each
    with nbcore.open_backend("e", config=slurm_config("n1")) as a, nbcore.open_backend("e", config=slurm_config("n2")) as b:
        where_a, where_b = a.call("slurmmod:where"), b.call("slurmmod:where")
        assert (where_a["node"], where_b["node"]) == ("n1", "n2")
        assert where_a["job"] != where_b["job"]
        assert {(j[0], j[2]) for j in slurm_cluster.jobs()} == {(where_a["job"], "n1"), (where_b["job"], "n2")}
        assert a.call("slurmmod:sleep", 0.1) == b.call("slurmmod:sleep", 0.1)


@pytest.mark.skipif(not SHM_INSTALLED, reason="nb-shm is not installed")
def test_shared_memory_only_on_the_hosts_own_node(slurm_cluster, project, slurm_config, monkeypatch):
    monkeypatch.setenv("NBCORE_SLURM_HOST_NODE", "n1")  # as when the host runs inside a job on n1
    with nbcore.open_backend("e", config=slurm_config("n1")) as env:
        assert env.protocol.startswith("shm-pickle")
        assert env.call("slurmmod:frame", 1000)[-1] == 999
    with nbcore.open_backend("e", config=slurm_config("n2")) as env:
        assert env.protocol.startswith("tcp-pickle")


CONDA_MODULE = '''
import os
import sys


def where():
    return {"prefix": sys.prefix, "conda_prefix": os.environ.get("CONDA_PREFIX"), "node": os.environ.get("SLURMD_NODENAME")}
'''


def test_a_conda_env_is_built_on_the_node_by_its_conda_backend(slurm_cluster, project, conda_on_nodes, nbcore_home):
    (project / "condamod.py").write_text(CONDA_MODULE)
    config = {"environments": {"c": {"python": "3.11", "conda": {}, "slurm": {"backend": "conda", "nodelist": "n2"}}}}
    with nbcore.open_backend("c", config=config) as env:
        where = env.call("condamod:where")
    assert where["prefix"].startswith(os.path.join(nbcore_home, "envs", "conda")) and where["node"] == "n2", where
    assert where["conda_prefix"] == where["prefix"], "the worker runs activated"
