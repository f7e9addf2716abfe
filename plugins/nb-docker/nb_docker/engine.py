"""Reaching the Docker daemon through docker-py (``DOCKER_HOST`` and friends honoured)."""
import functools
import os
from pathlib import Path
from typing import Dict, Optional

import docker
from docker.utils import kwargs_from_env

#: Seconds the availability check waits for the daemon.
PING_TIMEOUT = 3.0
#: Seconds ordinary API requests may take (builds, pulls and waits stream without a limit).
REQUEST_TIMEOUT = 120.0


def _daemon_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


@functools.lru_cache(maxsize=None)
def _client_for(address: str, timeout: float) -> docker.APIClient:
    return docker.APIClient(timeout=timeout, **kwargs_from_env())


def api_client() -> docker.APIClient:
    """The low-level client for the daemon named by the environment (one per address and process)."""
    return _client_for(_daemon_address(), REQUEST_TIMEOUT)


#: Common failures, recognised in docker-py's error text, and how to say them.
_KNOWN_FAILURES = (
    ("No such file or directory", "no socket there"),
    ("Connection refused", "connection refused"),
    ("Permission denied", "permission denied: add your user to the docker group"),
    ("timed out", "no answer within %.0f s" % PING_TIMEOUT),
)


@functools.lru_cache(maxsize=None)
def _unavailable_reason(address: str) -> Optional[str]:
    try:
        _client_for(address, PING_TIMEOUT).ping()
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        detail = next((said for seen, said in _KNOWN_FAILURES if seen in detail), detail[:200])
        return "cannot reach the Docker daemon at %s (%s); start dockerd or set DOCKER_HOST" % (address, detail)
    return None


def unavailable_reason() -> Optional[str]:
    """None when the daemon answers a ping, else a one-line reason (cached per process and address)."""
    return _unavailable_reason(_daemon_address())


#: The daemon's pid file, and the capability that lets a process raise its hard resource limits.
_PID_FILE = "/var/run/docker.pid"
_CAP_SYS_RESOURCE = 24
_LIMIT_NAMES = {"Max locked memory": "memlock", "Max stack size": "stack"}


@functools.lru_cache(maxsize=None)
def ulimit_ceilings() -> Dict[str, int]:
    """The most a local daemon may grant a container (-1 = unlimited) when it cannot raise its own hard limits
    (no CAP_SYS_RESOURCE, as in some VMs); empty when that is unknown (a remote daemon) or unbounded."""
    if not _daemon_address().startswith("unix://"):
        return {}
    try:
        proc = Path("/proc", Path(_PID_FILE).read_text().strip())
        effective = next(int(line.split()[1], 16) for line in (proc / "status").read_text().splitlines()
                         if line.startswith("CapEff:"))
        if effective >> _CAP_SYS_RESOURCE & 1:
            return {}
        ceilings = {}
        for line in (proc / "limits").read_text().splitlines():
            for label, name in _LIMIT_NAMES.items():
                if line.startswith(label):
                    hard = line[len(label):].split()[1]
                    ceilings[name] = -1 if hard == "unlimited" else int(hard)
        return ceilings
    except (OSError, ValueError, StopIteration, IndexError):
        return {}
