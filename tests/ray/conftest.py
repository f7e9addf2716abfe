"""A real two-node Ray cluster for the ray backend's tests, inside a network namespace of the test run's own.

Ray's components talk over the machine's interface address even when told
127.0.0.1, so the cluster, and the test process's own threads that talk to it,
run in a fresh network namespace that has only loopback: the fixture moves
pytest's main thread into it (``unshare(CLONE_NEWNET)`` is per thread; every
thread and process it starts afterwards inherits it) and back afterwards.
The head node (resource ``nodeA``) shares the host's ``NBCORE_HOME``; the second
node (``nodeB``) has its own and stands for another machine: the project folder
is always shipped (``NBCORE_RAY_SHIP_PROJECT=1``).  One cluster serves the whole folder's tests; it stops
after the last of them, before any other test runs.  With no network, nodes build
environments with venv + pip from a local wheelhouse made before the switch.
"""
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import nbcore
from nbcore.testing import engine_unavailable, pid_alive, wait_until

pytest.importorskip("nb_ray", reason="nb-ray is not installed (pip install -e 'plugins/nb-ray[test]')")

HERE = Path(__file__).parent
CLONE_NEWNET = 0x40000000
PORT = 6379
#: Seconds any start or stop of a node may take.
NODE_TIMEOUT = 90

#: The local conda channels of scripts/provision-conda (as tests/conda uses them).
CONDA_CHANNELS = Path(os.environ.get("NBCORE_CONDA_TEST_CHANNELS")
                      or os.path.join(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci"), "conda", "channels"))

TEST_MODULE = '''
import os
import sys
import time

import numpy as np


def where():
    return {"cwd": os.getcwd(), "python": sys.executable, "pid": os.getpid(),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}


def frame(n):
    return np.arange(n, dtype=np.float32)


def total(array):
    return float(array.sum())


def count(n):
    for i in range(n):
        yield i


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def wait_for_cancel(seconds):
    from nbcore.worker import check_cancelled
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check_cancelled()
        time.sleep(0.02)
    return "not cancelled"


class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value += n
        return self.value
'''


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _session_members(sid):
    """Pids of the processes in session ``sid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path("/proc/%s/stat" % entry).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry))
    return members


def kill_session(sid, timeout=10.0):
    """End every process of session ``sid`` at once, as when its machine goes down (bounded)."""
    for pid in _session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not _session_members(sid), timeout, "the processes of session %d to end" % sid)


def _node_path():
    """PATH without uv: the venv backend then builds with venv + pip, which work offline from the wheelhouse."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not os.access(os.path.join(d, "uv"), os.X_OK)]
    return os.pathsep.join(keep)


def _wheelhouse(folder):
    """numpy (the host's version) as a wheel, for environments built without network."""
    import numpy

    out = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:", "--no-deps",
                          "-d", str(folder), "numpy==%s" % numpy.__version__], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail("could not fetch the numpy wheel for the Ray nodes: %s" % out.stderr.strip()[-500:], pytrace=False)
    return folder


class Cluster:
    """The running test cluster: node processes, homes, and helpers to stop nodes and list actors."""

    def __init__(self, root, host_home):
        self.root = root
        self.address = "127.0.0.1:%d" % PORT
        self.homes = {"nodeA": Path(host_home), "nodeB": root / "home-b"}
        self.sessions = {}
        self.node_ids = {}
        wheelhouse = _wheelhouse(root / "wheels")
        self.node_env = dict(os.environ, RAY_AUTH_MODE="disabled", PATH=_node_path(), PIP_NO_INDEX="1",
                             PIP_FIND_LINKS=str(wheelhouse), RAY_ADDRESS="",
                             # a stopped node is marked dead within about 2 s, not 15
                             RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="4")
        self.node_env.pop("RAY_ADDRESS")
        if (CONDA_CHANNELS / "conda-forge").is_dir():  # the nodes' conda backend solves from the local channel
            self.node_env.update(NBCORE_CONDA_CHANNEL_ALIAS=CONDA_CHANNELS.as_uri(), NBCORE_CONDA_ENGINE="embedded")

    def _ray(self, *args):
        return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())", *args]

    def start_node(self, resource):
        head = resource == "nodeA"
        args = ["start", "--block", "--num-cpus=4", "--resources=%s" % json.dumps({resource: 1}),
                "--node-ip-address=127.0.0.1", "--object-store-memory=%d" % (100 * 1024 * 1024),
                "--disable-usage-stats", "--temp-dir=%s" % (self.root / ("ray-" + resource))]
        if head:
            args += ["--head", "--port=%d" % PORT, "--include-dashboard=false"]
        else:
            args += ["--address=%s" % self.address]
        log = open(self.root / ("%s.log" % resource), "ab")
        process = subprocess.Popen(self._ray(*args), env=dict(self.node_env, NBCORE_HOME=str(self.homes[resource])),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()
        self.sessions[resource] = process

    def wait_nodes(self, ray, count):
        def alive():
            return [n for n in ray.nodes() if n["Alive"]]

        wait_until(lambda: len(alive()) >= count, NODE_TIMEOUT, "%d Ray nodes" % count)
        for node in alive():
            for resource in ("nodeA", "nodeB"):
                if node["Resources"].get(resource):
                    self.node_ids[resource] = node["NodeID"]

    def actor_resources_held(self, ray):
        """How much of each node's own resource live actors hold (0 when no actor of the tests is left)."""
        total, free = ray.cluster_resources(), ray.available_resources()
        return {r: round(total.get(r, 0) - free.get(r, 0), 6) for r in ("nodeA", "nodeB")}

    def stop_node(self, resource, ray=None):
        """Kill every process of the node at once; with ``ray``, wait until the cluster counts it dead."""
        process = self.sessions.pop(resource, None)
        if process is not None:
            kill_session(process.pid)
            process.wait(NODE_TIMEOUT)
        if ray is not None:
            node_id = self.node_ids.pop(resource)
            wait_until(lambda: not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()), NODE_TIMEOUT,
                       "the cluster to count node %s dead" % resource)

    def log_tail(self, resource):
        return (self.root / ("%s.log" % resource)).read_text(errors="replace")[-2000:]


def _enter_new_network_namespace():
    """Move this thread into a fresh network namespace with loopback up; return the old one's fd."""
    old = os.open("/proc/self/task/%d/ns/net" % __import__("threading").get_native_id(), os.O_RDONLY)
    if _libc().unshare(CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        os.close(old)
        engine_unavailable("ray", "cannot make a network namespace for the test cluster (%s; needs root)" % os.strerror(error))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return old


def _leave_network_namespace(old):
    _libc().setns(old, CLONE_NEWNET)
    os.close(old)


@contextlib.contextmanager
def running_cluster(host_home):
    """Two Ray nodes (``nodeA`` = the host's node, ``nodeB`` = another machine) in a new network namespace."""
    try:
        import ray
    except ImportError:
        engine_unavailable("ray", "ray is not installed (pip install -e 'plugins/nb-ray[test]')")
    if shutil.which("ip") is None:
        engine_unavailable("ray", "the ip command (iproute2) is missing; run scripts/provision-ray")
    root = Path(tempfile.mkdtemp(prefix="nbray-", dir="/tmp"))  # short: Ray's socket paths live under it
    cluster = Cluster(root, host_home)
    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE", "NBCORE_RAY_SHIP_PROJECT")}
    old_namespace = _enter_new_network_namespace()
    try:
        os.environ.update(RAY_ADDRESS=cluster.address, RAY_AUTH_MODE="disabled", NBCORE_RAY_SHIP_PROJECT="1")
        cluster.start_node("nodeA")
        from nb_ray import cluster as connection

        wait_until(lambda: connection.unreachable.__wrapped__(cluster.address) is None, NODE_TIMEOUT, "the Ray head")
        connection.unreachable.cache_clear()
        cluster.start_node("nodeB")
        connection.connect()
        cluster.wait_nodes(ray, 2)
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for resource in list(cluster.sessions):
            cluster.stop_node(resource)
        _leave_network_namespace(old_namespace)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


#: The cluster of the ray tests now running: its ``ExitStack`` and :class:`Cluster`, or why it did not start.
_running = {}


@pytest.fixture
def ray_cluster(nbcore_home):
    """The two-node cluster: started by the first test that asks, stopped after the last test of this folder
    in a row (:func:`pytest_runtest_teardown`), so the tests after them run in the machine's own network."""
    if "failed" in _running:
        pytest.fail("the test cluster did not start: %s" % _running["failed"], pytrace=False)
    if "cluster" not in _running:
        stack = contextlib.ExitStack()
        try:
            _running["cluster"] = stack.enter_context(running_cluster(nbcore_home))
        except Exception as exc:
            _running["failed"] = "%s: %s" % (type(exc).__name__, exc)
            raise
        _running["stack"] = stack
    return _running["cluster"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if "stack" in _running and (nextitem is None or nextitem.path.parent != HERE):
        _running.pop("cluster")
        _running.pop("stack").close()


def _cluster_processes(cluster):
    """Node agents and workers of the cluster's environments that still run."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not pid_alive(int(entry)):
            continue
        try:
            argv = Path("/proc/%s/cmdline" % entry).read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv if a]
        worker = any("nbcore.worker" in a for a in text[1:])  # python -c "from nbcore.worker.serve import ..."
        if "nb_ray.node_agent" in text or (worker and any(text[0].startswith(str(h)) for h in cluster.homes.values())):
            found.append((int(entry), " ".join(text)))
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """After a test that used the cluster: no actor holds resources, no node agent or worker runs."""
    yield
    cluster = _running.get("cluster")
    if "ray_cluster" not in request.fixturenames or cluster is None:
        return
    import ray

    wait_until(lambda: set(cluster.actor_resources_held(ray).values()) == {0}, 30, "the actors to go")
    wait_until(lambda: not _cluster_processes(cluster), 10, "node agents and workers to end")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the test module, as the host's working directory."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "raymod.py").write_text(TEST_MODULE)
    (folder / ".gitignore").write_text("ignored/\n")
    (folder / "ignored").mkdir()
    (folder / "ignored" / "big.bin").write_bytes(b"x" * 1000)
    monkeypatch.chdir(folder)
    return folder


def env_config(resource, name="e", packages=("numpy",)):
    """A config with environment ``name`` placed on the node with ``resource``, built there with venv."""
    return {"environments": {name: {"packages": list(packages),
                                    "ray": {"backend": "venv", "num_cpus": 0, "resources": {resource: 0.01}}}}}


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    """:func:`wait_until`: poll a condition, boundedly."""
    return wait_until


@pytest.fixture(name="pid_alive")
def pid_alive_fixture():
    """:func:`pid_alive`: whether a process still runs (zombies count as ended)."""
    return pid_alive


@pytest.fixture
def conda_on_nodes():
    """Skip, as a missing conda engine, unless the nodes can build conda environments (nb-conda and the local
    channel their ``NBCORE_CONDA_CHANNEL_ALIAS`` names)."""
    conda = nbcore.get_registry().backends.get("conda")
    reason = "nb-conda is not installed" if conda is None else conda.check_available()
    if not reason and not (CONDA_CHANNELS / "conda-forge").is_dir():
        reason = "no local test channel in %s: run scripts/provision-conda" % CONDA_CHANNELS
    if reason:
        engine_unavailable("conda", reason)


@pytest.fixture
def ray_config():
    """:func:`env_config`: the config of an environment placed on a node by resource."""
    return env_config
