"""The channel: a connected link that carries pickled messages between host and worker."""
import pickle

from . import framing
from .pickling import DecodeError, EncodeError, Pickling, unpickle

__all__ = ["Channel", "DecodeError", "EncodeError", "SocketChannel"]


class Channel:
    """Base class of every protocol's connected link; both host and worker use it.

    Subclasses implement :meth:`send`, :meth:`recv` and :meth:`close`.  ``send``
    pickles the whole message before it writes a byte and raises
    :class:`EncodeError` when pickling fails; ``recv`` consumes the whole frame
    before it unpickles and raises :class:`DecodeError` when unpickling fails.
    Either way the channel can carry the next message.  A channel
    starts at pickle protocol 2 (every supported Python reads it) and is moved to
    the negotiated protocol by setting :attr:`pickle_protocol`.  Messages are
    pickled with :mod:`nbcore.worker.pickling` (numpy objects in a version-neutral
    form).  After the negotiation :attr:`peer` holds the other side's versions.
    """

    #: Protocol family, e.g. ``"tcp-pickle"``; the negotiated :attr:`name` adds details.
    protocol = "channel"

    #: The other side's ``{"python": "3.9.18", "numpy": "1.23.5" or None}``, set by the negotiation (None before).
    peer = None

    def __init__(self):
        self.pickle_protocol = 2

    @property
    def name(self):
        """The negotiated name, e.g. ``tcp-pickle5-buffers``."""
        suffix = "-buffers" if self.pickle_protocol >= 5 else ""
        return "%s%d%s" % (self.protocol, self.pickle_protocol, suffix)

    def send(self, message):
        raise NotImplementedError

    def allocate(self, nbytes):
        """A writable buffer that :meth:`send` transfers cheaply; default: ordinary memory."""
        return framing.allocate(nbytes)

    def recv(self):
        raise NotImplementedError

    def keepalive(self, seconds):
        """Make a silent peer (its machine gone) end :meth:`recv` within about ``seconds``; default: nothing."""

    def close(self):
        raise NotImplementedError


class SocketChannel(Channel):
    """A channel over a connected stream socket (TCP or unix)."""

    def __init__(self, sock, protocol):
        super().__init__()
        self.protocol = protocol
        self.sock = sock
        self._framer = framing.SocketFramer(sock)
        self._pickling = Pickling(self.pickle_protocol)

    def send(self, message):
        pickling = self._pickling
        if pickling.protocol != self.pickle_protocol:
            pickling = self._pickling = Pickling(self.pickle_protocol)
        try:
            data, buffers = pickling.dumps(message)
        except Exception as exc:
            raise EncodeError(exc) from exc
        self._framer.send_message(data, [b.raw() for b in buffers] if buffers else ())

    def recv(self):
        data, buffers = self._framer.recv_message(stream=True)
        if isinstance(data, framing.PickleStream):  # a large pickle: unpickled as it arrives
            return self._load_stream(data)
        return unpickle(data, buffers)

    @staticmethod
    def _load_stream(stream):
        try:
            return pickle.load(stream)
        except Exception as exc:
            raise DecodeError(exc) from exc
        finally:
            stream.finish()  # skips what was left unread; a lost connection replaces the error it caused

    def keepalive(self, seconds):
        framing.keepalive(self.sock, seconds)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
