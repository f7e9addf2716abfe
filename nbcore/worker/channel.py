"""The channel: a connected link that carries pickled messages between host and worker."""
import pickle

from . import framing


class EncodeError(Exception):
    """A message could not be pickled; nothing of it was sent, the channel stays usable.

    :attr:`error` is the exception pickling raised.
    """

    def __init__(self, error):
        super().__init__("%s: %s" % (type(error).__name__, error))
        self.error = error


class DecodeError(Exception):
    """A whole message arrived but could not be unpickled; the channel stays usable.

    :attr:`error` is the exception unpickling raised (a missing module or class,
    a failing ``__setstate__``).  A frame that is not a valid message is a
    :class:`~nbcore.worker.framing.ProtocolError` instead.
    """

    def __init__(self, error):
        super().__init__("%s: %s" % (type(error).__name__, error))
        self.error = error


class Channel:
    """Base class of every protocol's connected link; both host and worker use it.

    Subclasses implement :meth:`send`, :meth:`recv` and :meth:`close`.  ``send``
    pickles the whole message before it writes a byte and raises
    :class:`EncodeError` when pickling fails; ``recv`` consumes the whole frame
    before it unpickles and raises :class:`DecodeError` when unpickling fails.
    Either way the channel can carry the next message.  A channel
    starts at pickle protocol 2 (every supported Python reads it) and is moved to
    the negotiated protocol by setting :attr:`pickle_protocol`.
    """

    #: Protocol family, e.g. ``"tcp-pickle"``; the negotiated :attr:`name` adds details.
    protocol = "channel"

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

    def send(self, message):
        protocol = self.pickle_protocol
        try:
            if protocol >= 5:
                buffers = []
                data = pickle.dumps(message, protocol, buffer_callback=buffers.append)
                raw = [b.raw() for b in buffers] if buffers else ()
            else:
                data, raw = pickle.dumps(message, protocol), ()
        except Exception as exc:
            raise EncodeError(exc) from exc
        self._framer.send_message(data, raw)

    def recv(self):
        data, buffers = self._framer.recv_message(stream=True)
        if isinstance(data, framing.PickleStream):  # a large pickle: unpickled as it arrives
            return self._load_stream(data)
        try:
            return pickle.loads(data, buffers=buffers)
        except Exception as exc:
            raise DecodeError(exc) from exc

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
