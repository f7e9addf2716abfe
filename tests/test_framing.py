"""The wire format: round trips, and clean errors (no hang, no huge allocation) on bad input."""
import pickle
import socket
import struct
import threading
import tracemalloc
import zlib

import pytest

from nbcore.worker import framing
from nbcore.worker.channel import SocketChannel
from nbcore.worker.framing import HEADER, MAGIC, ConnectionClosed, ProtocolError, SocketFramer, encode_header

TIMEOUT = 5.0


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    for s in (a, b):
        s.settimeout(TIMEOUT)  # a bug shows up as socket.timeout, never as a hung suite
    yield a, b
    a.close()
    b.close()


def send_raw(sock, data):
    threading.Thread(target=sock.sendall, args=(data,), daemon=True).start()


def test_round_trip_small_and_large(pair):
    a, b = pair
    sender, receiver = SocketFramer(a), SocketFramer(b)
    big = bytes(range(256)) * (framing.READ_AHEAD // 64)  # 4x the read-ahead buffer
    messages = [(b"", []), (b"x" * 10, []), (b"p", [b"abc", b"", big]), (big, [bytearray(5)])]

    def send_all():
        for data, buffers in messages:
            sender.send_message(data, buffers)

    thread = threading.Thread(target=send_all)
    thread.start()
    for data, buffers in messages:
        got_data, got_buffers = receiver.recv_message()
        assert bytes(got_data) == bytes(data)
        assert [bytes(x) for x in got_buffers] == [bytes(x) for x in buffers]
    thread.join()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_channel_round_trip(pair, protocol):
    a, b = pair
    left, right = SocketChannel(a, "test"), SocketChannel(b, "test")
    left.pickle_protocol = right.pickle_protocol = protocol
    payload = {"text": "é", "blob": bytearray(b"\0" * 3_000_000), "nested": [1, (2, 3.5)]}
    threading.Thread(target=left.send, args=(payload,), daemon=True).start()
    assert right.recv() == payload
    assert right.name == "test%d%s" % (protocol, "-buffers" if protocol >= 5 else "")


@pytest.mark.parametrize("protocol", [4, 5])
def test_numpy_arrays_round_trip(pair, protocol):
    np = pytest.importorskip("numpy")
    a, b = pair
    left, right = SocketChannel(a, "test"), SocketChannel(b, "test")
    left.pickle_protocol = right.pickle_protocol = protocol
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((0, 3)),
              np.arange(2_000_000, dtype=np.int64)[::3], np.ones((5, 5), dtype=bool).T]
    buffers = []
    pickle.dumps(arrays, protocol, buffer_callback=buffers.append if protocol >= 5 else None)
    assert bool(buffers) == (protocol >= 5)
    threading.Thread(target=left.send, args=(arrays,), daemon=True).start()
    for want, got in zip(arrays, right.recv()):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_garbage_is_a_protocol_error(pair):
    a, b = pair
    send_raw(a, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ProtocolError, match="bad magic"):
        SocketFramer(b).recv_message()


def test_bad_checksum_is_a_protocol_error(pair):
    a, b = pair
    head = bytearray(encode_header(10, [5]))
    head[-1] ^= 0xFF  # flip a bit of the buffer table
    send_raw(a, bytes(head) + b"x" * 15)
    with pytest.raises(ProtocolError, match="checksum"):
        SocketFramer(b).recv_message()


def test_too_many_buffers_is_rejected_before_reading_the_table(pair):
    a, b = pair
    send_raw(a, HEADER.pack(MAGIC, 1 << 31, 0, 0))
    with pytest.raises(ProtocolError, match="buffers"):
        SocketFramer(b).recv_message()


def claim(pickle_len, buffer_lens=()):
    return encode_header(pickle_len, list(buffer_lens))


@pytest.mark.parametrize("header", [claim(1 << 60), claim(10, [1 << 60]), claim(10, [1 << 40] * 2000)],
                         ids=["pickle", "buffer", "many-buffers"])
def test_huge_claims_are_refused_without_allocating(pair, header):
    a, b = pair
    send_raw(a, header + b"some bytes that follow")
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="larger than this machine's memory"):
            SocketFramer(b).recv_message()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


@pytest.mark.parametrize("cut", ["header", "table", "pickle", "buffer"])
def test_truncated_message_is_connection_closed(pair, cut):
    a, b = pair
    data, buffers = b"p" * 100, [b"b" * 3_000_000]
    whole = encode_header(len(data), [len(buffers[0])]) + data + buffers[0]
    end = {"header": HEADER.size - 3, "table": HEADER.size + 4, "pickle": HEADER.size + 8 + 50,
           "buffer": len(whole) - 1000}[cut]

    def send_and_close():
        a.sendall(whole[:end])
        a.shutdown(socket.SHUT_WR)

    threading.Thread(target=send_and_close, daemon=True).start()
    with pytest.raises(ConnectionClosed):
        SocketFramer(b).recv_message()


def test_truncated_claim_of_a_large_message_is_connection_closed(pair, later):
    a, b = pair
    send_raw(a, claim(200 << 20) + b"only this")
    later(0.2, a.shutdown, socket.SHUT_WR)
    with pytest.raises(ConnectionClosed):
        SocketFramer(b).recv_message()


def test_peer_closing_between_messages(pair):
    a, b = pair
    a.close()
    with pytest.raises(ConnectionClosed):
        SocketFramer(b).recv_message()


def test_reset_connection_is_connection_closed():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sendall(claim(1000)[:10])
    client.close()  # RST
    conn.settimeout(TIMEOUT)
    try:
        with pytest.raises(ConnectionClosed):
            SocketFramer(conn).recv_message()
    finally:
        conn.close()
        server.close()


def test_unpickling_never_happens_for_a_bad_frame(pair, tmp_path):
    a, b = pair
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    data = pickle.dumps(Evil())
    head = bytearray(encode_header(len(data), []))
    head[4] ^= 1  # damage the count: the checksum no longer matches
    send_raw(a, bytes(head) + data)
    with pytest.raises(ProtocolError):
        SocketChannel(b, "test").recv()
    assert not marker.exists()


def test_header_layout():
    head = encode_header(7, [1, 2])
    magic, count, length, crc = HEADER.unpack_from(head)
    assert (magic, count, length) == (MAGIC, 2, 7)
    table = head[HEADER.size:]
    assert struct.unpack("<2Q", table) == (1, 2)
    assert crc == zlib.crc32(table, zlib.crc32(struct.pack("<IQ", 2, 7)))


def channel_pair(pair, protocol):
    left, right = SocketChannel(pair[0], "test"), SocketChannel(pair[1], "test")
    left.pickle_protocol = right.pickle_protocol = protocol
    return left, right


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_large_in_band_pickles_are_unpickled_as_they_arrive(pair, protocol):
    """A pickle of STREAM_PICKLE bytes or more is read from the socket by pickle.load, then the next message follows."""
    left, right = channel_pair(pair, protocol)
    blob = bytes(range(256)) * (framing.STREAM_PICKLE // 256 + 1000)
    payload = {"blob": blob, "text": "é" * 1000, "numbers": list(range(1000))}
    if protocol == 0:  # text opcodes (readline): keep the count of lines small
        payload = {"text": "x" * (framing.STREAM_PICKLE + 10), "numbers": list(range(100))}

    def send_both():
        left.send(payload)
        left.send("next")

    threading.Thread(target=send_both, daemon=True).start()
    assert right.recv() == payload
    assert right.recv() == "next"


class FailsToRebuild:
    def __init__(self, size):
        self.blob = b"\0" * size

    def __reduce__(self):
        return (_refuse, (self.blob,))


def _refuse(blob):
    raise ValueError("cannot rebuild")


def test_large_pickle_that_fails_to_unpickle_is_consumed(pair):
    from nbcore.worker.channel import DecodeError

    left, right = channel_pair(pair, 5)

    def send_both():
        left.send([FailsToRebuild(framing.STREAM_PICKLE), b"\2" * framing.STREAM_PICKLE])
        left.send("next")

    threading.Thread(target=send_both, daemon=True).start()
    with pytest.raises(DecodeError, match="cannot rebuild"):
        right.recv()
    assert right.recv() == "next"


def test_large_pickle_cut_short_is_connection_closed(pair):
    a, b = pair
    data = pickle.dumps(b"\3" * framing.STREAM_PICKLE, 5)

    def send_and_close():
        a.sendall(encode_header(len(data), []) + data[:len(data) // 2])
        a.shutdown(socket.SHUT_WR)

    threading.Thread(target=send_and_close, daemon=True).start()
    with pytest.raises(ConnectionClosed):
        SocketChannel(b, "test").recv()
