"""What a protocol plugin provides: the :class:`ProtocolProvider` and the fallback listener."""
import abc
from typing import Callable, ClassVar, Optional, Tuple

from ..worker.channel import Channel


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
    #: Dotted name of the worker-side module (stdlib only, Python 3.8+).
    worker_module: ClassVar[str]

    @abc.abstractmethod
    def check_available(self) -> Optional[str]:
        """Return None when the host side can run this protocol, else the reason."""

    def listen(self, bind_host: str) -> Listener:
        """Start listening for a worker (only protocols that can be the fallback implement it)."""
        raise NotImplementedError("%s cannot be the fallback protocol" % self.name)

    def host_offer(self, channel: Channel) -> Tuple[object, dict]:
        """Prepare an upgrade from ``channel``; return ``(state, offer)``, the offer being sent to the worker."""
        raise NotImplementedError("%s cannot be an upgrade target" % self.name)

    def host_complete(self, channel: Channel, state: object, reply: dict) -> Channel:
        """Finish the upgrade with the worker's ``reply``; return the new channel."""
        raise NotImplementedError

    def host_abort(self, state: object) -> None:
        """Release what :meth:`host_offer` prepared; called when the upgrade is not used."""
