"""The channel: a connected link that carries pickled messages between host and worker."""
import pickle

from . import framing


class Channel:
    """Base class of every protocol's connected link; both host and worker use it.

    Subclasses implement :meth:`send`, :meth:`recv` and :meth:`close`.  A channel
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
        if protocol >= 5:
            buffers = []
            data = pickle.dumps(message, protocol, buffer_callback=buffers.append)
            self._framer.send_message(data, [b.raw() for b in buffers] if buffers else ())
        else:
            self._framer.send_message(pickle.dumps(message, protocol), ())

    def recv(self):
        data, buffers = self._framer.recv_message()
        return pickle.loads(data, buffers=buffers)

    def keepalive(self, seconds):
        framing.keepalive(self.sock, seconds)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
