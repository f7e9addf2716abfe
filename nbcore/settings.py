"""The launch settings read from the environment, each checked in one place.

Every function reads its variable when called and returns the value ready to
use; a value it cannot use is a :class:`~nbcore.errors.UserError` naming the
variable, the value and what it accepts (never a traceback, never a worker
started with a value it would choke on).  ``docs/configuration.md`` lists them.
"""
import math
import os
import socket
from typing import Optional, Tuple

from .errors import UserError

#: Seconds a started worker has to connect back, when ``NBCORE_CONNECT_TIMEOUT`` is not set.
DEFAULT_CONNECT_TIMEOUT = 120.0
#: Seconds an install waits for another process's install of the same environment.
DEFAULT_INSTALL_TIMEOUT = 7200.0


def seconds(variable: str, default: float) -> float:
    """The positive, finite number of seconds in ``variable`` (``default`` when unset or empty)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError("%s=%r is not a positive number of seconds; use e.g. %s=%g, or unset it (default %g)"
                        % (variable, os.environ[variable], variable, default, default))
    return value


def connect_timeout() -> float:
    """Seconds a started worker has to connect back to the host (``NBCORE_CONNECT_TIMEOUT``, default 120)."""
    return seconds("NBCORE_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)


def keepalive_seconds() -> float:
    """Seconds after which either side counts a silent peer on the control connection as gone
    (``NBCORE_KEEPALIVE``, default :data:`nbcore.worker.serve.DEFAULT_KEEPALIVE`)."""
    from .worker.serve import DEFAULT_KEEPALIVE

    return seconds("NBCORE_KEEPALIVE", DEFAULT_KEEPALIVE)


def install_timeout() -> float:
    """Seconds an install waits for another process's install of the same environment
    (``NBCORE_INSTALL_TIMEOUT``, default 7200)."""
    return seconds("NBCORE_INSTALL_TIMEOUT", DEFAULT_INSTALL_TIMEOUT)


def bind_address() -> str:
    """The interface the host listens on for workers (``NBCORE_BIND``, default ``127.0.0.1``)."""
    return os.environ.get("NBCORE_BIND", "").strip() or "127.0.0.1"


def advertised_address() -> Optional[str]:
    """The host name or address workers are told to connect to (``NBCORE_ADVERTISE``); None when unset.

    It must resolve here: a name the host cannot resolve is almost always a typo, and a worker told
    to use it would only fail later, on another machine.
    """
    text = os.environ.get("NBCORE_ADVERTISE", "").strip()
    if not text:
        return None
    _resolvable("NBCORE_ADVERTISE", text, "a host name or address the workers' machines can reach")
    return text


def port_range() -> Optional[Tuple[int, int]]:
    """The inclusive port range the host listens in (``NBCORE_PORTS``, e.g. ``50000-50100``); None: any port."""
    text = os.environ.get("NBCORE_PORTS", "").strip()
    if not text:
        return None
    first, _, last = text.partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        low, high = 0, -1
    if not 0 < low <= high < 65536:
        raise UserError("NBCORE_PORTS=%r is not a port range; use e.g. 50000-50100 (ports 1-65535)"
                        % os.environ["NBCORE_PORTS"])
    return low, high


def pickle_protocol_max() -> Optional[int]:
    """The highest pickle protocol either end may offer (``NBCORE_PICKLE_PROTOCOL_MAX``); None: no cap.

    The worker reads the variable itself; checking it here keeps a bad value from crashing it."""
    text = os.environ.get("NBCORE_PICKLE_PROTOCOL_MAX", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UserError("NBCORE_PICKLE_PROTOCOL_MAX=%r is not a pickle protocol; use a whole number such as 4, "
                        "or unset it (the highest both ends know)" % os.environ["NBCORE_PICKLE_PROTOCOL_MAX"])
    return value


def buffer_pool_megabytes() -> int:
    """Megabytes of receive buffers kept for reuse (``NBCORE_BUFFER_POOL_MB``, default 1024)."""
    from .worker.framing import pool_megabytes

    value = pool_megabytes()
    if value is None:
        raise UserError("NBCORE_BUFFER_POOL_MB=%r is not a size; use a whole number of megabytes such as 256 "
                        "(0: keep none)" % os.environ["NBCORE_BUFFER_POOL_MB"])
    return value


def check() -> None:
    """Check every launch setting at once, so a bad one stops a command before it starts anything."""
    for read in (connect_timeout, keepalive_seconds, install_timeout, bind_address, advertised_address, port_range,
                 pickle_protocol_max, buffer_pool_megabytes):
        read()


def _resolvable(variable, host, accepted):
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError("%s=%r does not resolve here (%s); use %s" % (variable, host, reason, accepted)) from None
