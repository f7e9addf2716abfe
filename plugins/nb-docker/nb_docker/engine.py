"""Reaching the Docker daemon through docker-py (``DOCKER_HOST`` and friends honoured)."""
import functools
import os
from typing import Optional

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
