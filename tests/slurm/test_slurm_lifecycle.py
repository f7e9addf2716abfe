"""Nothing outlives its owner: close(), Ctrl-C, the host's death and a node's failure end the job and its processes."""
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import nbcore
from nbcore.plugin import BackendUnavailable, WorkerError
from nbcore.testing import read_line

pytestmark = pytest.mark.slurm

HOST_SCRIPT = textwrap.dedent('''
    import sys
    import nbcore
    config = {"environments": {"e": {"packages": ["numpy"], "slurm": {"backend": "venv", "nodelist": "n2"}}}}
    env = nbcore.open_backend("e", config=config)
    info = env.call("slurmmod:where")
    print("ready", info["job"], info["pid"], env.call("slurmmod:escape"), flush=True)
    env.call("slurmmod:wait_for_cancel", 120)  # Ctrl-C cancels it, then ends the host
''')


def test_close_ends_the_job_and_a_double_forked_child(slurm_cluster, project, slurm_config, pid_alive, wait_until):
    with nbcore.open_backend("e", config=slurm_config("n2")) as env:
        info = env.call("slurmmod:where")
        escapee = env.call("slurmmod:escape")
        assert pid_alive(escapee) and pid_alive(info["pid"])
    wait_until(lambda: not pid_alive(escapee) and not pid_alive(info["pid"]), 15,
               "the worker and its double-forked child to end with the job")
    wait_until(lambda: slurm_cluster.job_state(info["job"]) in ("CANCELLED", "COMPLETED"), 15, "the job to end")


def _host(project):
    return subprocess.Popen([sys.executable, "-c", HOST_SCRIPT], cwd=str(project), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_the_hosts_end_ends_the_job(slurm_cluster, project, pid_alive, wait_until, how):
    host = _host(project)
    try:
        line = read_line(host.stdout, 120)
        assert line.startswith("ready"), line + host.stderr.read()
        job, worker, escapee = line.split()[1:]
        time.sleep(0.5)  # the sleep call is under way
        host.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        host.wait(30)
    finally:
        host.kill()
        host.wait()
    wait_until(lambda: slurm_cluster.job_state(job) not in ("RUNNING", "COMPLETING", "PENDING"), 20,
               "job %s to end after the host's %s" % (job, how))
    wait_until(lambda: not pid_alive(int(worker)) and not pid_alive(int(escapee)), 15,
               "the worker and its double-forked child to end")


def test_pending_is_shown_and_bounded(slurm_cluster, project, slurm_config, capfd):
    blocker = slurm_cluster.client("sbatch", "--parsable", "-w", "n1", "--output=/dev/null", "--wrap", "sleep 300").strip()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"still pending after \d+ s \(reason: Resources\)"):
            nbcore.open_backend("e", config=slurm_config("n1", pending_timeout="2s"))
        assert time.monotonic() - started < 15
        assert "is pending (Resources)" in capfd.readouterr().err
        # the same request waits while n1 is busy, and runs once it is free
        later = threading.Timer(2.0, slurm_cluster.client, ("scancel", blocker))
        later.start()
        with nbcore.open_backend("e", config=slurm_config("n1")) as env:
            assert env.call("slurmmod:where")["node"] == "n1"
        later.join()
        assert "is pending (Resources)" in capfd.readouterr().err
    finally:
        slurm_cluster.client("scancel", blocker)


@pytest.mark.parametrize("section, says", [
    ({"cpus_per_task": 8}, "More processors requested than permitted"),
    ({"partition": "nosuch"}, "invalid partition"),
    ({"mem": "5000"}, "Requested node configuration is not available"),
])
def test_an_impossible_request_is_one_line_at_once(slurm_cluster, project, slurm_config, section, says):
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        nbcore.open_backend("e", config=slurm_config(**section))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message and message.startswith("Slurm refused the allocation for e")
    assert says.lower() in message.lower()


def test_slurmd_killed_mid_call_is_an_error_naming_job_and_node(slurm_cluster, project, slurm_config, wait_until):
    with nbcore.open_backend("e", config=slurm_config("n2")) as env:
        job = env.call("slurmmod:where")["job"]
        timer = threading.Timer(1.0, slurm_cluster.kill_slurmd, ("n2",))
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(WorkerError) as caught:
                env.call("slurmmod:wait_for_cancel", 120)  # Ctrl-C cancels it, then ends the host
        finally:
            timer.join()
            slurm_cluster.start_slurmd("n2")
    took = time.monotonic() - started
    assert took < 60, "noticed within the keepalive bound"
    message = str(caught.value)
    assert "Slurm job %s on node n2 ended: NODE_FAIL" % job in message, message
    wait_until(lambda: slurm_cluster.node_state("n2") == "idle", 60, "n2 to return to service")
