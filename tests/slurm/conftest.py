"""A real two-node Slurm cluster for the slurm backend's tests, reachable only over loopback.

Every daemon (munged, slurmctld, ``slurmd -N n1``, ``slurmd -N n2``) runs in ONE
network namespace of the test run's own that holds nothing but ``lo``, and every
address in its ``slurm.conf`` is in 127.0.0.0/8: no packet can leave the machine.
The test process's main thread joins that namespace (``setns``) while the folder's
tests run, so the Slurm commands it starts (``sbatch``, ``srun``...) and the host it
plays talk to the cluster there; the host listens on 127.0.0.2, the namespace's
second loopback address (Slurm's daemons cannot bind with 127.0.0.1 alone).  Both
nodes run on this machine and share ``NBCORE_HOME``, the project and the test
venv's Python: the shared filesystem the backend assumes.  With no network in the
namespace, nodes build venvs with pip from a local wheelhouse made before the switch.

The cluster starts with the first test that asks for it and stops after the last
test of this folder; stopping leaves no daemon, namespace or cgroup folder behind
(job-side processes first, then the slurmd's, then slurmctld, then munged).
"""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nbcore.testing import engine_unavailable, pid_alive, wait_until

pytest.importorskip("nb_slurm", reason="nb-slurm is not installed (pip install -e plugins/nb-slurm)")

HERE = Path(__file__).parent
CLONE_NEWNET = 0x40000000
NODES = {"n1": ("127.0.0.11", 6821, 1), "n2": ("127.0.0.12", 6822, 4)}  # address, port, CPUs
HOST_ADDRESS = "127.0.0.2"
#: The local conda channels of scripts/provision-conda (as tests/conda uses them).
CONDA_CHANNELS = Path(os.environ.get("NBCORE_CONDA_TEST_CHANNELS")
                      or os.path.join(os.environ.get("NBCORE_CI_CACHE", "/var/cache/nbcore-ci"), "conda", "channels"))
#: Seconds the cluster may take to come up, and any daemon to stop.
START_TIMEOUT = 30
STOP_TIMEOUT = 10

TEST_MODULE = '''
import os
import subprocess
import sys
import time

import numpy as np


def where():
    return {"node": os.environ.get("SLURMD_NODENAME"), "job": os.environ.get("SLURM_JOB_ID"),
            "step": os.environ.get("SLURM_STEP_ID"), "cwd": os.getcwd(), "python": sys.executable,
            "pid": os.getpid(), "cpus": os.environ.get("SLURM_CPUS_PER_TASK")}


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


def escape():
    """A double-forked child in a session of its own (ppid 1): only the job's cgroup still holds it."""
    out = subprocess.run(["bash", "-c", "setsid sleep 4321 </dev/null >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value += n
        return self.value
'''

SLURM_CONF = """\
ClusterName=nbtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort=6817
SrunPortRange=60001-60100
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={base}/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool/%n
SlurmctldPidFile={base}/run/slurmctld.pid
SlurmdPidFile={base}/run/slurmd-%n.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=300
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

CGROUP_CONF = """\
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
"""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


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
        pytest.fail("could not fetch the numpy wheel for the Slurm nodes: %s" % out.stderr.strip()[-500:], pytrace=False)
    return folder


class Cluster:
    """The running test cluster: its folder, namespace, daemons, and helpers the tests use."""

    def __init__(self, base, namespace):
        self.base = base
        self.namespace = namespace
        self.conf = base / "etc" / "slurm.conf"
        self.netns = "/run/netns/%s" % namespace

    # --- inside the namespace

    def nsenter(self, *argv):
        return ["nsenter", "--net=%s" % self.netns, "env", "SLURM_CONF=%s" % self.conf] + list(argv)

    def client(self, *argv, timeout=30):
        """Run a Slurm client command (the caller is in the namespace already); return its stdout."""
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, SLURM_CONF=str(self.conf)))
        return out.stdout

    def jobs(self):
        """``squeue``'s jobs: ``[(id, state, node), ...]``."""
        return [tuple(line.split()) for line in self.client("squeue", "-h", "-o", "%i %T %N").splitlines() if line.strip()]

    def job_state(self, job):
        for word in self.client("scontrol", "show", "job", "-o", str(job)).split():
            if word.startswith("JobState="):
                return word.split("=", 1)[1]
        return "GONE"

    def node_state(self, node):
        return self.client("sinfo", "-h", "-n", node, "-o", "%t").strip()

    def daemon_pids(self):
        pids = {}
        for f in (self.base / "run").glob("*.pid"):
            try:
                pids[f.stem] = int(f.read_text())
            except (OSError, ValueError):
                pass
        munged = self.base / "munge" / "munged.pid"
        if munged.exists():
            pids["munged"] = int(munged.read_text())
        return pids

    def namespace_pids(self):
        out = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def job_side_pids(self):
        """Processes in the namespace that are neither a daemon, a child of slurmctld, nor this test process."""
        daemons = set(self.daemon_pids().values())
        ctld = self.daemon_pids().get("slurmctld")
        found = []
        for pid in self.namespace_pids():
            if pid in daemons or pid == os.getpid() or not pid_alive(pid):
                continue
            try:
                ppid = int(Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == ctld or ppid == os.getpid():
                continue
            found.append(pid)
        return found

    def kill_slurmd(self, node):
        pid = self.daemon_pids()["slurmd-%s" % node]
        assert Path("/proc/%d/comm" % pid).read_text().strip() == "slurmd"
        os.kill(pid, signal.SIGKILL)

    def start_slurmd(self, node):
        subprocess.run(self.nsenter("slurmd", "-f", str(self.conf), "-N", node), check=True, timeout=30)

    def log(self, name):
        path = self.base / "log" / ("%s.log" % name)
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # --- up and down

    def start(self):
        host = socket.gethostname().split(".")[0]
        try:
            address = socket.gethostbyname(host)
        except OSError:
            address = ""
        if not address.startswith("127."):
            engine_unavailable("slurm", "this machine's name %s does not resolve to loopback in /etc/hosts (got %r); "
                                        "the test cluster would ask DNS" % (host, address))
        for d in ("munge", "state", "spool", "log", "run", "etc"):
            (self.base / d).mkdir(parents=True)
        (self.base / "munge").chmod(0o711)
        subprocess.run(["ip", "netns", "add", self.namespace], check=True)
        subprocess.run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", self.namespace, "addr", "add", "%s/32" % HOST_ADDRESS, "dev", "lo"], check=True)
        links = subprocess.run(["ip", "-n", self.namespace, "-o", "link", "show", "up"], capture_output=True,
                               text=True).stdout
        assert [line.split(": ")[1] for line in links.splitlines()] == ["lo"], links
        route = subprocess.run(["ip", "-n", self.namespace, "route", "get", "1.1.1.1"], capture_output=True)
        assert route.returncode != 0, "the test namespace has a route off the machine"
        key = self.base / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = self.base / "munge"
        subprocess.run(self.nsenter("munged", "--force", "--socket=%s/munge.socket.2" % munge,
                                    "--key-file=%s" % key, "--pid-file=%s/munged.pid" % munge,
                                    "--log-file=%s/munged.log" % munge, "--seed-file=%s/munged.seed" % munge),
                       check=True, timeout=30)
        nodes = "\n".join("NodeName=%s NodeHostname=%s NodeAddr=%s Port=%d CPUs=%d RealMemory=1000 State=UNKNOWN"
                          % (name, host, addr, port, cpus) for name, (addr, port, cpus) in NODES.items())
        text = SLURM_CONF.format(host=host, base=self.base, nodes=nodes)
        import re
        assert all(a.startswith("127.") for a in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)), text
        self.conf.write_text(text)
        (self.base / "etc" / "cgroup.conf").write_text(CGROUP_CONF)
        subprocess.run(self.nsenter("slurmctld", "-c", "-f", str(self.conf)), check=True, timeout=30)
        for name in NODES:
            self.start_slurmd(name)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            out = subprocess.run(self.nsenter("timeout", "5", "sinfo", "-h", "-N", "-o", "%t"), capture_output=True,
                                 text=True).stdout.split()
            if out and set(out) == {"idle"}:
                return
            for daemon, pid in self.daemon_pids().items():
                if not pid_alive(pid):
                    raise RuntimeError("%s died: %s" % (daemon, self.log(daemon)[-500:]))
            time.sleep(0.1)
        raise RuntimeError("the Slurm test cluster was not idle after %d s (logs in %s)" % (START_TIMEOUT, self.base))

    def stop(self):
        """Everything down, by pid (job side first, then the slurmd's, slurmctld, munged), then the namespace
        and the cgroup folders proctrack/cgroup made.  Bounded waits."""
        if not os.path.exists(self.netns):
            return
        for pid in self.job_side_pids():  # slurmstepd ignores SIGTERM, and slurmd waits for it: kill first
            _kill(pid, signal.SIGKILL)
        pids = self.daemon_pids()
        _stop([pid for name, pid in pids.items() if name.startswith("slurmd-")])
        _stop([pids[name] for name in ("slurmctld",) if name in pids])
        _stop([pids[name] for name in ("munged",) if name in pids])
        _stop([pid for pid in self.namespace_pids() if pid != os.getpid()])
        subprocess.run(["ip", "netns", "del", self.namespace], check=True)
        for name in NODES:
            for folder in Path("/sys/fs/cgroup").glob("*/slurm_%s" % name):
                for sub in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
                    if sub.is_dir():
                        with contextlib.suppress(OSError):
                            sub.rmdir()
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stop(pids):
    """SIGTERM, up to :data:`STOP_TIMEOUT` s, then SIGKILL."""
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            _kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)


def leftovers():
    """What a stopped cluster must not leave: Slurm or munge daemons, test namespaces, slurm cgroup folders."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_alive(int(entry)):
            try:
                comm = Path("/proc/%s/comm" % entry).read_text().strip()
            except OSError:
                continue
            if comm in ("slurmctld", "slurmd", "slurmstepd", "slurmscriptd", "munged"):
                found.append("%s %s" % (entry, comm))
    found += ["namespace " + n for n in os.listdir("/run/netns") if n.startswith("nbslurm")] if os.path.isdir("/run/netns") else []
    found += ["cgroup %s" % p for p in Path("/sys/fs/cgroup").glob("*/slurm_n[12]")]
    return found


def _setns(path_or_fd):
    fd = os.open(path_or_fd, os.O_RDONLY) if isinstance(path_or_fd, str) else path_or_fd
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns: %s" % os.strerror(ctypes.get_errno()))
    finally:
        if isinstance(path_or_fd, str):
            os.close(fd)


@contextlib.contextmanager
def running_cluster(home):
    """The two-node cluster, with this thread (and what it starts) in its namespace and the host's variables set."""
    for tool in ("slurmctld", "slurmd", "sbatch", "munged", "ip", "nsenter"):
        if shutil.which(tool) is None:
            engine_unavailable("slurm", "%s is not installed; run scripts/provision-slurm" % tool)
    if os.geteuid() != 0:
        engine_unavailable("slurm", "the test cluster needs root (a network namespace, daemons as root)")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("the Slurm test cluster must be entered from the main thread")
    root = Path(tempfile.mkdtemp(prefix="nbslurm-", dir="/tmp"))
    wheelhouse = _wheelhouse(root / "wheels")
    cluster = Cluster(root / "cluster", "nbslurm-%d" % os.getpid())
    names = ("SLURM_CONF", "NBCORE_BIND", "NBCORE_ADVERTISE", "PIP_NO_INDEX", "PIP_FIND_LINKS", "PATH",
             "NBCORE_SLURM_WATCH", "NBCORE_CONDA_CHANNEL_ALIAS", "NBCORE_CONDA_ENGINE")
    saved = {k: os.environ.get(k) for k in names}
    old = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        cluster.start()
        _setns(cluster.netns)
        os.environ.update(SLURM_CONF=str(cluster.conf), NBCORE_BIND=HOST_ADDRESS, PIP_NO_INDEX="1",
                          PIP_FIND_LINKS=str(wheelhouse), PATH=_node_path(), NBCORE_SLURM_WATCH="1")
        os.environ.pop("NBCORE_ADVERTISE", None)
        if (CONDA_CHANNELS / "conda-forge").is_dir():  # the nodes' conda backend solves from the local channel
            os.environ.update(NBCORE_CONDA_CHANNEL_ALIAS=CONDA_CHANNELS.as_uri(), NBCORE_CONDA_ENGINE="embedded")
        from nb_slurm import commands

        commands.unavailable.cache_clear()
        yield cluster
    finally:
        _setns(old)
        os.close(old)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from nb_slurm import commands

        commands.unavailable.cache_clear()
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


#: The cluster of the slurm tests now running: its ``ExitStack`` and :class:`Cluster`, or why it did not start.
_running = {}


@pytest.fixture
def slurm_cluster(nbcore_home):
    """The two-node cluster: started by the first test that asks, stopped after the last test of this folder in a
    row (:func:`pytest_runtest_teardown`), so the tests after them run in the machine's own network."""
    if "failed" in _running:
        pytest.fail("the test cluster did not start: %s" % _running["failed"], pytrace=False)
    if "cluster" not in _running:
        stack = contextlib.ExitStack()
        try:
            _running["cluster"] = stack.enter_context(running_cluster(nbcore_home))
        except Exception as exc:
            stack.close()
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
        left = leftovers()
        assert not left, "the stopped test cluster left behind: %s" % left


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """After a test that used the cluster: no job left in the queue, no process of a job left on a node."""
    yield
    cluster = _running.get("cluster")
    if "slurm_cluster" not in request.fixturenames or cluster is None:
        return
    wait_until(lambda: not cluster.jobs(), 30, "every job to end (squeue: %s)" % cluster.jobs())
    wait_until(lambda: not cluster.job_side_pids(), 15, "every job's processes to end")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with the test module, as the host's working directory (shared with the nodes)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "slurmmod.py").write_text(TEST_MODULE)
    monkeypatch.chdir(folder)
    return folder


def env_config(node=None, name="e", packages=("numpy",), **section):
    """A config with environment ``name`` on Slurm (on ``node`` when given), built there with venv."""
    slurm = dict({"backend": "venv"}, **section)
    if node:
        slurm["nodelist"] = node
    return {"environments": {name: {"packages": list(packages), "slurm": slurm}}}


@pytest.fixture(name="slurm_config")
def slurm_config_fixture():
    """:func:`env_config`."""
    return env_config


@pytest.fixture
def conda_on_nodes():
    """Skip, as a missing conda engine, unless the nodes can build conda environments (nb-conda and the local
    channel their ``NBCORE_CONDA_CHANNEL_ALIAS`` names)."""
    import nbcore

    conda = nbcore.get_registry().backends.get("conda")
    reason = "nb-conda is not installed" if conda is None else conda.check_available()
    if not reason and not (CONDA_CHANNELS / "conda-forge").is_dir():
        reason = "no local test channel in %s: run scripts/provision-conda" % CONDA_CHANNELS
    if reason:
        engine_unavailable("conda", reason)


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


@pytest.fixture(name="pid_alive")
def pid_alive_fixture():
    return pid_alive
