"""What a protocol plugin provides: the :class:`ProtocolProvider` and the fallback listener."""
import abc
import dataclasses
import select
import socket
from typing import Callable, ClassVar, FrozenSet, Optional, Tuple

from .. import settings

from ..worker.channel import Channel

#: The role of a protocol that makes the first connection (it implements :meth:`ProtocolProvider.listen`).
FALLBACK = "fallback"
#: The role of a protocol that replaces an established connection (:meth:`ProtocolProvider.host_offer`, ...).
UPGRADE = "upgrade"


#: Host names that bind every interface: never an address a worker can be told to connect to.
WILDCARDS = ("0.0.0.0", "::", "")


def connect_timeout() -> float:
    """Seconds a started worker has to connect back to the host (``NBCORE_CONNECT_TIMEOUT``, default 120);
    a value that is not a positive number of seconds is a :class:`~nbcore.errors.UserError`."""
    return settings.connect_timeout()


def keepalive_seconds() -> float:
    """Seconds after which either side counts a silent peer on the control connection as gone
    (``NBCORE_KEEPALIVE``, default :data:`nbcore.worker.serve.DEFAULT_KEEPALIVE`); checked like
    :func:`connect_timeout`."""
    return settings.keepalive_seconds()


@dataclasses.dataclass(frozen=True)
class ListenAddress:
    """Where a fallback protocol listens for workers, and the address it tells them.

    The two differ when the worker runs on another machine: the host binds
    ``0.0.0.0`` (or one interface) and advertises a name the worker can reach.
    """

    #: Interface to bind (``NBCORE_BIND``, default ``127.0.0.1``).
    bind: str = "127.0.0.1"
    #: Host the worker connects to (``NBCORE_ADVERTISE``); None: :attr:`bind`, or this machine's address
    #: when :attr:`bind` is a wildcard.
    advertise: Optional[str] = None
    #: Inclusive port range to listen in (``NBCORE_PORTS=50000-50100``, for firewalled clusters); None: any.
    ports: Optional[Tuple[int, int]] = None

    @classmethod
    def from_environment(cls) -> "ListenAddress":
        """The address the host's variables ask for."""
        return cls(bind=settings.bind_address(), advertise=settings.advertised_address(),
                   ports=settings.port_range())

    def advertised_host(self) -> str:
        """The host name or address a worker is told to connect to."""
        if self.advertise:
            return self.advertise
        if self.bind not in WILDCARDS:
            return self.bind
        return _this_machine_address(socket.AF_INET6 if self.bind == "::" else socket.AF_INET)

    def candidate_ports(self):
        """The ports to try binding, in order (``[0]``: any port the system picks)."""
        return [0] if self.ports is None else list(range(self.ports[0], self.ports[1] + 1))


def _this_machine_address(family):
    """This machine's address on the interface of its default route (no packet is sent)."""
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.connect(("2001:db8::1" if family == socket.AF_INET6 else "192.0.2.1", 9))
        return probe.getsockname()[0]
    except OSError:
        return socket.gethostname()
    finally:
        probe.close()


class Listener(abc.ABC):
    """Where a fallback protocol waits for a new worker to connect."""

    #: The address the worker connects to (passed in ``NBCORE_WORKER_ADDRESS``).
    address: str

    @abc.abstractmethod
    def accept(self, secret: bytes, timeout: float, worker_exit_code: Callable[[], Optional[int]]) -> Tuple[Channel, Channel]:
        """Wait for the worker's ``main`` and ``control`` connections; return both channels.

        Connections that fail authentication are closed and ignored.  Raise
        :class:`nbcore.WorkerError` when ``worker_exit_code()`` reports that the
        worker ended, or when ``timeout`` seconds pass.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop listening."""


class ProtocolProvider(abc.ABC):
    """A way to move messages between host and worker (``tcp-pickle``, ``shm-pickle``, ...).

    Host side, the provider is this object.  Worker side, it is the stdlib-only
    module named by :attr:`worker_module`, which nbcore injects into every
    environment and which defines ``worker_available()`` and, depending on the
    roles the protocol plays, ``worker_connect(address, secret, role)`` (fallback)
    and ``worker_accept_offer(channel, offer)`` (upgrade target).  See
    ``docs/plugins.md`` for the whole exchange.
    """

    #: The name used in ``NBCORE_PROTOCOL`` lists.
    name: ClassVar[str]
    #: One line shown by ``nbcore protocols``.
    description: ClassVar[str] = ""
    #: Dotted name of the worker-side module (stdlib only; Python 3.7+, or a worker_available() that declines older).
    worker_module: ClassVar[str]
    #: What the protocol can do: :data:`FALLBACK` (make the first connection, :meth:`listen`) and/or
    #: :data:`UPGRADE` (replace it after connecting, :meth:`host_offer` / :meth:`host_complete`).
    #: A subclass that does not set it gets the roles of the methods it implements.
    roles: ClassVar[FrozenSet[str]] = frozenset()
    #: Rank in the default protocol list: the fallback with the highest preference comes first, and the
    #: upgrade with the highest preference is tried first.
    preference: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "roles" not in cls.__dict__:
            cls.roles = frozenset(
                ([FALLBACK] if cls.listen is not ProtocolProvider.listen else [])
                + ([UPGRADE] if cls.host_offer is not ProtocolProvider.host_offer else []))

    def role_problem(self) -> Optional[str]:
        """Why :attr:`roles` does not match the methods the class implements (None when it does)."""
        if not self.roles or not self.roles <= {FALLBACK, UPGRADE}:
            return "declares roles %s; expected %r and/or %r" % (sorted(self.roles), FALLBACK, UPGRADE)
        cls = type(self)
        if FALLBACK in self.roles and cls.listen is ProtocolProvider.listen:
            return "has the role %r but does not implement listen()" % FALLBACK
        if UPGRADE in self.roles and (cls.host_offer is ProtocolProvider.host_offer
                                      or cls.host_complete is ProtocolProvider.host_complete):
            return "has the role %r but does not implement host_offer() and host_complete()" % UPGRADE
        return None

    @abc.abstractmethod
    def check_available(self) -> Optional[str]:
        """Return None when the host side can run this protocol, else the reason."""

    def listen(self, where: ListenAddress) -> Listener:
        """Start listening for a worker at ``where`` (the :data:`FALLBACK` role); the listener's
        :attr:`~Listener.address` uses :meth:`ListenAddress.advertised_host`."""
        raise NotImplementedError("%s cannot be the fallback protocol" % self.name)

    def host_offer(self, channel: Channel) -> Tuple[object, dict]:
        """Prepare an upgrade from ``channel`` (the :data:`UPGRADE` role); return ``(state, offer)``, the offer
        being sent to the worker."""
        raise NotImplementedError("%s cannot be an upgrade target" % self.name)

    def host_complete(self, channel: Channel, state: object, reply: dict) -> Channel:
        """Finish the upgrade with the worker's ``reply``; return the new channel."""
        raise NotImplementedError

    def host_abort(self, state: object) -> None:
        """Release what :meth:`host_offer` prepared; called when the upgrade is not used."""


def readable(sockets, timeout: float) -> list:
    """The ``sockets`` that are ready to read (or closed) within ``timeout`` seconds, for accept loops.

    It uses ``poll``, so any descriptor number works (``select`` stops at 1024: a host with many open
    files could not open an environment)."""
    poller = select.poll()
    by_fd = {}
    for sock in sockets:
        by_fd[sock.fileno()] = sock
        poller.register(sock, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(0.0, timeout) * 1000)]
