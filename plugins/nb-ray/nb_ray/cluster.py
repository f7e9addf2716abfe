"""The Ray cluster the host talks to: its address, a fast reachability probe, the driver connection."""
import functools
import logging
import os
import socket
import sys
from typing import Optional

from nbcore.plugin import BackendUnavailable

#: Ray's own variable naming the cluster (``HOST:PORT`` of the head's GCS, or ``ray://HOST:PORT``).
ADDRESS_VARIABLE = "RAY_ADDRESS"
#: Where ``ray start --head`` records the address of the cluster it started on this machine.
LOCAL_CLUSTER_FILE = os.path.join(os.environ.get("RAY_TMPDIR") or "/tmp", "ray", "ray_current_cluster")
#: Seconds the reachability probe waits for the head to accept a connection.
PROBE_TIMEOUT = 1.0
#: The Ray namespace the backend's actors live in.
NAMESPACE = "nbcore"

START_HINT = "start one with `ray start --head` or set RAY_ADDRESS=HOST:PORT"


def cluster_address() -> Optional[str]:
    """The address to connect to: ``RAY_ADDRESS``, else the cluster started on this machine, else None."""
    address = os.environ.get(ADDRESS_VARIABLE, "").strip()
    if address and address != "auto":
        return address
    try:
        with open(LOCAL_CLUSTER_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def connected() -> bool:
    """Whether this process is a driver already (the program called ``ray.init``); Ray is not imported for it."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _where(address):
    return "%s (%s)" % (address, ADDRESS_VARIABLE if os.environ.get(ADDRESS_VARIABLE) else "the cluster last started here")


@functools.lru_cache(maxsize=None)
def unreachable(address: Optional[str]) -> Optional[str]:
    """None when the head at ``address`` accepts a connection within :data:`PROBE_TIMEOUT`, else why not (cached)."""
    if address is None:
        return "no Ray cluster is known (RAY_ADDRESS is unset and none was started here); " + START_HINT
    host, _, port = address.rpartition("://")[2].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), PROBE_TIMEOUT).close()
    except ValueError:
        return "RAY_ADDRESS=%r is not HOST:PORT" % address
    except OSError as exc:
        return "no Ray cluster answers at %s: %s; %s" % (_where(address), exc.strerror or exc, START_HINT)
    return None


def connect():
    """Connect this process to the cluster as a Ray driver (once; a program that called ``ray.init`` is reused)."""
    import ray

    if connected():
        return ray
    address = cluster_address()
    reason = unreachable(address)
    if reason:
        raise BackendUnavailable(reason)
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING,
                 configure_logging=True, log_to_driver=True)
    except Exception as exc:
        raise BackendUnavailable("cannot connect to the Ray cluster at %s: %s" % (_where(address), exc)) from None
    return ray


def error_cause(exc) -> str:
    """The last line of a Ray error that says what went wrong (a task error ends with the raised exception)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
