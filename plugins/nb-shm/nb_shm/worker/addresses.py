"""Raw memory of mapped segments and of buffers, through ctypes.

:mod:`.segments` imports this module when it maps its first segment, not when
it is imported: the host imports it on every open, ctypes costs about a
millisecond there, and a side that never sends or receives a buffer of
:data:`~.channel.INLINE_MAX` bytes or more maps no segment.
"""
import ctypes
import sys


class Exporter(ctypes.c_char * min(1 << 40, sys.maxsize // 2)):
    """Exports the memory of one region; every view of it keeps it (and the mapping) alive.

    ``owner`` is ``(notify, key, segment)``: when the last view is gone,
    ``notify(key)`` reports the region as released; ``segment`` keeps the
    mapping alive meanwhile.  The exported length is nominal: callers only ever
    see slices of it.
    """

    __slots__ = ("owner",)

    def __del__(self):
        owner = self.owner
        owner[0](owner[1])


def address_of(buffer):
    """The address of a writable buffer's first byte; TypeError or ValueError when it is read-only or empty."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def copy_without_gil(address, buffer, nbytes):
    """Copy ``buffer`` to ``address`` with the GIL released (other threads, such as a generator running
    ahead, go on meanwhile); False when ``buffer`` is read-only and not ``bytes`` (the caller copies it)."""
    if not isinstance(buffer, bytes):
        try:
            buffer = address_of(buffer)
        except (TypeError, ValueError):
            return False
    ctypes.memmove(address, buffer, nbytes)
    return True
