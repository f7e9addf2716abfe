"""One Slurm allocation per open environment: an ``sbatch`` job whose batch script holds the node.

The batch script (:mod:`nb_slurm.hold`) connects back to the host as soon as the
job runs and then waits on that connection, so the allocation lives exactly as
long as the host holds it: :meth:`Allocation.cancel` (``scancel``), or the host's
end (Ctrl-C, a crash, SIGKILL: the kernel closes the connection) ends the job,
and with it every step and process Slurm started in it.
"""
import hmac
import os
import re
import select
import shlex
import socket
import time
from typing import Dict, List, Optional

from nbcore.plugin import BackendUnavailable, ListenAddress, keepalive_seconds

from . import commands
from .hold import HOLD_VARIABLE, keepalive

#: ``NBCORE_SLURM_PENDING_TIMEOUT``: the default of ``slurm: {pending_timeout: ...}`` (seconds; 0: wait forever).
PENDING_VARIABLE = "NBCORE_SLURM_PENDING_TIMEOUT"
#: Seconds an allocation may pend when neither the spec nor the site says.
DEFAULT_PENDING_TIMEOUT = 3600.0
#: Seconds between two looks at the job's state while waiting for it to run.
POLL_SECONDS = 0.5
#: Seconds a job whose batch script ended without connecting back is given to report why.
HOLD_CONNECT_GRACE = 30.0

#: Keys of ``slurm:`` that become ``sbatch`` options, and the option each becomes.
SBATCH_OPTIONS = (("partition", "--partition"), ("time", "--time"), ("cpus_per_task", "--cpus-per-task"),
                  ("mem", "--mem"), ("gpus", "--gpus"), ("gres", "--gres"), ("account", "--account"),
                  ("qos", "--qos"), ("constraint", "--constraint"), ("nodelist", "--nodelist"))

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*$")


def parse_duration(value) -> float:
    """Seconds of ``value``: a number, or a string such as ``"90"``, ``"90s"``, ``"10m"``, ``"2h"``."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise BackendUnavailable("slurm.pending_timeout=%r is not a duration; write e.g. 600, \"10m\" or \"2h\"" % value)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def pending_timeout(section: dict) -> float:
    """How long an allocation may pend: the spec's ``pending_timeout``, else :data:`PENDING_VARIABLE`, else
    :data:`DEFAULT_PENDING_TIMEOUT`; 0 means no limit."""
    value = section.get("pending_timeout")
    if value is None:
        value = os.environ.get(PENDING_VARIABLE) or DEFAULT_PENDING_TIMEOUT
    return parse_duration(value)


def sbatch_options(section: dict) -> List[str]:
    """The ``sbatch`` options of the spec's ``slurm:`` section (its ``sbatch_args`` last, as written)."""
    options = []
    for key, option in SBATCH_OPTIONS:
        value = section.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        options.append("%s=%s" % (option, value))
    return options + [str(arg) for arg in section.get("sbatch_args") or ()]


class Allocation:
    """A running Slurm job that holds a node for one environment (see the module's docstring)."""

    def __init__(self, job_id: str, node: str, hold: socket.socket, name: str, section: dict):
        self.job_id = job_id
        self.node = node
        self.name = name
        self.section = section
        self._hold = hold
        self._cancelled = False

    @classmethod
    def request(cls, name: str, section: dict, python: str, progress) -> "Allocation":
        """Submit the job for environment ``name`` and wait until it runs, reporting its queue state and reason
        on ``progress``; a refused request, a job that ends first or one pending longer than the limit raise
        :class:`BackendUnavailable` (the job cancelled)."""
        where = ListenAddress.from_environment()
        listener = _listen(where)
        token = os.urandom(16).hex()
        address = "%s:%d:%s" % (where.advertised_host(), listener.getsockname()[1], token)
        argv = (["sbatch", "--parsable", "--job-name=nbcore-%s" % name, "--nodes=1", "--ntasks=1", "--no-requeue",
                 "--output=/dev/null", "--chdir=/"] + sbatch_options(section)
                + ["--wrap=exec %s -m nb_slurm.hold" % shlex.quote(python)])
        try:
            out = commands.run(argv, env=commands.slurm_environment({HOLD_VARIABLE: address,
                                                                     "NBCORE_KEEPALIVE": str(keepalive_seconds())}))
            if out.returncode != 0:
                raise BackendUnavailable("Slurm refused the allocation for %s (%s): %s"
                                         % (name, " ".join(sbatch_options(section)) or "no options",
                                            commands.last_error(out.stderr)))
            job_id = out.stdout.strip().split(";")[0]
            try:
                hold, node = _wait_running(job_id, name, section, listener, token, where, progress)
            except BaseException:
                commands.cancel(job_id)
                raise
        finally:
            listener.close()
        return cls(job_id, node, hold, name, section)

    def describe(self) -> str:
        return "Slurm job %s on node %s" % (self.job_id, self.node)

    def srun(self, argv: List[str], cwd: Optional[str], terminal: bool = False) -> List[str]:
        """The ``srun`` command line that runs ``argv`` as a step of this job on its node, in ``cwd``."""
        step = ["srun", "--jobid=%s" % self.job_id, "--overlap", "--nodes=1", "--ntasks=1", "--quiet",
                "--kill-on-bad-exit=1"]
        if self.section.get("cpus_per_task"):
            step.append("--cpus-per-task=%s" % self.section["cpus_per_task"])
        if cwd:
            step.append("--chdir=%s" % cwd)
        if terminal:
            step.append("--pty")
        return step + list(argv)

    def state(self) -> Dict[str, str]:
        """The job's ``scontrol show job`` fields (``JobState`` ``GONE`` when the controller forgot it)."""
        return commands.job_info(self.job_id) or {"JobState": "GONE"}

    def cancel(self) -> None:
        """End the job, every step and every process in it (``scancel``); idempotent."""
        if self._cancelled:
            return
        self._cancelled = True
        commands.cancel(self.job_id)
        self._hold.close()


def _listen(where: ListenAddress) -> socket.socket:
    """A listening socket at the host's launch address (``NBCORE_BIND``/``NBCORE_PORTS``) for the batch script."""
    family = socket.AF_INET6 if ":" in where.bind else socket.AF_INET
    last = None
    for port in where.candidate_ports():
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((where.bind, port))
            sock.listen(4)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise BackendUnavailable("cannot listen at %s for the Slurm allocation (%s); check NBCORE_BIND and NBCORE_PORTS"
                             % (where.bind, last))


def _wait_running(job_id, name, section, listener, token, where, progress):
    """Wait until the job's batch script connects back; return ``(connection, node)``."""
    limit = pending_timeout(section)
    started = time.monotonic()
    next_look = 0.0
    said = None
    info = {}
    ended_at = None
    while True:
        readable, _, _ = select.select([listener], [], [], POLL_SECONDS)
        if readable:
            held = _accept(listener, token)
            if held is not None:
                progress.step("Slurm job %s for %s runs on node %s (%.1f s)"
                              % (job_id, name, held[1], time.monotonic() - started))
                return held
        now = time.monotonic()
        if now < next_look:
            continue
        next_look = now + 1.0
        info = commands.job_info(job_id) or {"JobState": "GONE"}
        state = commands.state_of(info)
        reason = info.get("Reason", "None")
        if (state, reason) != said:
            said = (state, reason)
            if state == "PENDING" and reason != "None":  # None: the scheduler has not looked at it yet
                progress.step("Slurm job %s for %s is pending (%s)" % (job_id, name, reason))
        if state in commands.ENDED_STATES or state == "GONE":
            ended_at = ended_at or now
            if now - ended_at > 1.0:  # a connection that was on its way has had its chance
                raise BackendUnavailable(_ended_message(job_id, name, state, reason, where))
        elif state == "PENDING" and limit and now - started > limit:
            raise BackendUnavailable("Slurm job %s for %s was still pending after %.0f s (reason: %s); "
                                     "ask for less, or allow longer with slurm: {pending_timeout: ...}"
                                     % (job_id, name, now - started, reason))


def _accept(listener, token):
    conn, _ = listener.accept()
    conn.settimeout(10)
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) < 1024:
            chunk = conn.recv(1024)
            if not chunk:
                break
            data += chunk
    except OSError:
        data = b""
    parts = data.decode(errors="replace").split()
    if len(parts) != 2 or not hmac.compare_digest(parts[0], token):
        conn.close()
        return None
    conn.settimeout(None)
    keepalive(conn, keepalive_seconds())
    return conn, parts[1]


def _ended_message(job_id, name, state, reason, where):
    message = "Slurm job %s for %s ended (%s, reason: %s) before its node connected back to the host at %s" % (
        job_id, name, state, reason, where.advertised_host())
    if where.advertised_host().startswith("127.") or where.advertised_host() in ("localhost", "::1"):
        message += ("; the host listens on loopback: set NBCORE_BIND=0.0.0.0 (and NBCORE_ADVERTISE=NAME if the "
                    "nodes know this machine by another name)")
    else:
        message += "; check that the nodes reach this machine (NBCORE_ADVERTISE, NBCORE_PORTS) and see the job's log"
    return message
