"""Slurm's commands as the backend runs them (``sbatch``, ``srun``, ``scontrol``, ``scancel``), every one bounded.

No Slurm Python binding is used: the commands are what every Slurm site has, in
every version (as submitit does).  They run with the host's environment minus the
variables of a job the host itself may run in (``SLURM_JOB_ID``, ``SLURM_NTASKS``,
...), which would otherwise change what ``sbatch`` and ``srun`` ask for.
"""
import functools
import os
import re
import shutil
import subprocess
from typing import Dict, List, Optional

from nbcore.plugin import BackendUnavailable

#: Seconds a client command (not ``srun`` of a step) may take before it counts as hanging.
CLIENT_TIMEOUT = 30.0
#: Seconds ``scontrol ping`` may take in :func:`unavailable` (a client with no controller retries for about 9 s).
PING_TIMEOUT = 5.0
#: Job states after which a job holds nothing any more.
ENDED_STATES = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT")
#: Job states that mean the node or the job failed under the worker.
FAILED_STATES = ("BOOT_FAIL", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT")

#: Where Slurm's commands look for their configuration without ``SLURM_CONF`` (Debian's build, older Debian's,
#: and the copy slurmd keeps on the nodes of a configless cluster).
DEFAULT_CONFIGS = ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf", "/run/slurm/conf/slurm.conf")

INSTALL_HINT = ("install the Slurm client commands (Debian/Ubuntu: apt-get install slurm-client) "
                "or load your site's Slurm module")

_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*)")


def slurm_environment(variables: Optional[Dict[str, str]] = None, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) without the variables of the job it may run in
    (every ``SLURM*`` one but ``SLURM_CONF``), plus ``variables``."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("SLURM") or k == "SLURM_CONF"}
    env.update(variables or {})
    return env


def run(argv: List[str], timeout: float = CLIENT_TIMEOUT, env=None) -> subprocess.CompletedProcess:
    """Run a Slurm client command; a missing command or one that hangs is a :class:`BackendUnavailable`."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else slurm_environment(), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BackendUnavailable("%s is not on PATH; %s" % (argv[0], INSTALL_HINT)) from None
    except subprocess.TimeoutExpired:
        raise BackendUnavailable("%s did not answer within %.0f s; is the Slurm controller up (scontrol ping)?"
                                 % (" ".join(argv[:3]), timeout)) from None


def last_error(text: str) -> str:
    """The last meaningful line of a Slurm command's stderr, without its ``sbatch: error:`` prefix."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    return re.sub(r"^(sbatch|srun|scontrol|scancel|squeue|slurmstepd)(: error)?:\s*", "", lines[-1])


@functools.lru_cache(maxsize=None)
def unavailable() -> Optional[str]:
    """None when ``sbatch`` is installed and a controller answers ``scontrol ping``, else why not and the fix
    (cached for the process)."""
    for command in ("sbatch", "srun", "scontrol", "scancel"):
        if shutil.which(command) is None:
            return "%s is not on PATH; %s" % (command, INSTALL_HINT)
    conf = os.environ.get("SLURM_CONF")
    if not conf and not any(os.path.exists(path) for path in DEFAULT_CONFIGS):
        # (no client runs then: without a slurm.conf it would look for a controller in DNS)
        return ("Slurm has no configuration here (SLURM_CONF is unset and %s does not exist); set "
                "SLURM_CONF=/path/to/slurm.conf, or run on a machine of the cluster" % DEFAULT_CONFIGS[0])
    where = "SLURM_CONF=%s" % conf if conf else "the default slurm.conf"
    try:
        out = run(["scontrol", "ping"], timeout=PING_TIMEOUT)
    except BackendUnavailable:
        return ("no Slurm controller answered scontrol ping within %.0f s (%s); check that slurmctld runs "
                "and that this machine can reach it, or set SLURM_CONF" % (PING_TIMEOUT, where))
    if out.returncode != 0 or " is UP" not in out.stdout:
        said = last_error(out.stdout + "\n" + out.stderr)
        return "no Slurm controller is reachable (scontrol ping: %s; %s); check that slurmctld runs, or set SLURM_CONF" % (
            said, where)
    return None


def fields(line: str) -> Dict[str, str]:
    """``Key=Value`` pairs of one line of ``scontrol show ... -o``."""
    return {key: value for key, value in _FIELD.findall(line)}


def job_info(job_id: str) -> Optional[Dict[str, str]]:
    """The fields of ``scontrol show job -o JOB``, or None when the controller no longer knows the job."""
    out = run(["scontrol", "show", "job", "-o", str(job_id)])
    if out.returncode != 0 or "JobId=" not in out.stdout:
        return None
    return fields(out.stdout.splitlines()[0])


def node_info(node: str) -> Dict[str, str]:
    """The fields of ``scontrol show node -o NODE`` (empty when unknown)."""
    out = run(["scontrol", "show", "node", "-o", node])
    return fields(out.stdout.splitlines()[0]) if out.returncode == 0 and out.stdout.strip() else {}


def cancel(job_id: str) -> None:
    """``scancel JOB``: the job ends with every step and process in it (never raises)."""
    try:
        run(["scancel", str(job_id)])
    except BackendUnavailable:
        pass


def state_of(info: Optional[Dict[str, str]]) -> str:
    """The job's state without its flags (``RUNNING``), ``GONE`` when the controller forgot it."""
    if info is None:
        return "GONE"
    return info.get("JobState", "UNKNOWN").split("+")[0]
