"""Protocol negotiation: host/worker lists that overlap or not, unknown names, fallbacks, pickle protocol.

Fake protocols come from a test plugin: their host side is defined here, their
worker side is a small package written to a temporary folder on ``sys.path``,
so nbcore stages it into workers like any protocol plugin's worker module.
"""
import logging
import socket
import sys
import threading
import types

import pytest

from nbcore import open_backend
from nbcore.host import launch as host
from nbcore.plugin import registry as plugins
from nbcore.plugin.protocol import ProtocolProvider
from nbcore.worker.channel import SocketChannel
from nbcore.host.negotiation import host_negotiate
from nbcore.worker.negotiation import worker_negotiate
from nbcore.worker import tcp_pickle as tcp_worker

from nbtest import REPO_ROOT, write

EMPTY = {"environments": {"demo": {}}}
NUMPY = {"environments": {"demo": {"packages": ["numpy"]}}}

UPGRADE_WORKER = '''
"""Worker side of the fake upgrade protocols: a second, plain TCP connection."""
import os
import socket

from nbcore.worker.channel import SocketChannel


def worker_available():
    name = __name__.rsplit(".", 1)[-1]
    if name in os.environ.get("NBT_FAKE_UNAVAILABLE", "").split(","):
        return "test worker cannot run %s" % name
    return None


def worker_accept_offer(channel, offer):
    sock = socket.create_connection(tuple(offer["address"]), timeout=10)
    sock.settimeout(None)
    return SocketChannel(sock, offer["name"]), {"token": offer["token"]}
'''

DECLINE_WORKER = '''
def worker_available():
    return None


def worker_accept_offer(channel, offer):
    raise RuntimeError("declined by the test worker")
'''

IMPORTFAIL_WORKER = '''
import os

if os.environ.get("NBT_FAKE_IMPORT_FAIL"):
    raise ImportError("simulated missing dependency")


def worker_available():
    return None
'''


class FakeUpgrade(ProtocolProvider):
    """Upgrades to a second TCP connection (enough to tell the channels apart)."""

    def __init__(self, name, worker_module, host_reason=None, fail=None):
        self.name = name
        self.worker_module = worker_module
        self.host_reason = host_reason
        self.fail = fail

    def check_available(self):
        return self.host_reason

    def host_offer(self, channel):
        if self.fail == "offer":
            raise RuntimeError("offer failed on purpose")
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(10)
        return server, {"name": self.name, "address": list(server.getsockname()), "token": 7}

    def host_complete(self, channel, state, reply):
        if self.fail == "complete":
            raise RuntimeError("complete failed on purpose")
        assert reply == {"token": 7}
        conn, _ = state.accept()
        conn.settimeout(None)
        state.close()
        return SocketChannel(conn, self.name)

    def host_abort(self, state):
        if state is not None:
            state.close()


def make_plugin():
    module = types.ModuleType("nbtest_fake_protocols")

    @plugins.hookimpl
    def nbcore_register(register):
        register.protocol(FakeUpgrade("fake-up", "nbt_fakeproto.up"))
        register.protocol(FakeUpgrade("fake-up2", "nbt_fakeproto.up2"))
        register.protocol(FakeUpgrade("fake-decline", "nbt_fakeproto.decline"))
        register.protocol(FakeUpgrade("fake-hostless", "nbt_fakeproto.up", host_reason="needs /dev/nbt"))
        register.protocol(FakeUpgrade("fake-offerfail", "nbt_fakeproto.up", fail="offer"))
        register.protocol(FakeUpgrade("fake-completefail", "nbt_fakeproto.up", fail="complete"))
        register.protocol(FakeUpgrade("fake-importfail", "nbt_fakeproto.importfail"))

    module.nbcore_register = nbcore_register
    return module


@pytest.fixture(scope="module")
def fake_package(tmp_path_factory):
    root = tmp_path_factory.mktemp("fakeproto")
    write(root / "nbt_fakeproto" / "__init__.py", "")
    write(root / "nbt_fakeproto" / "up.py", UPGRADE_WORKER)
    write(root / "nbt_fakeproto" / "up2.py", UPGRADE_WORKER)
    write(root / "nbt_fakeproto" / "decline.py", DECLINE_WORKER)
    write(root / "nbt_fakeproto" / "importfail.py", IMPORTFAIL_WORKER)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m.startswith("nbt_fakeproto")]:
        del sys.modules[name]


@pytest.fixture
def registry(fake_package, monkeypatch, clean_env, nbcore_home, workdir):
    monkeypatch.setenv("NBCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("NBT_FAKE_IMPORT_FAIL", "1")
    monkeypatch.setattr(plugins, "_registry", plugins.build_registry(plugins=[make_plugin()], autoload=False))
    return plugins._registry


# (protocol list, worker cannot run, negotiated name, log lines that must appear)
MATRIX = [
    ("tcp-pickle", "", "tcp-pickle5-buffers", []),
    ("tcp-pickle,tcp-pickle", "", "tcp-pickle5-buffers", []),
    ("tcp-pickle,fake-up", "", "fake-up5-buffers", []),
    ("tcp-pickle,fake-up", "up", "tcp-pickle5-buffers",
     ["protocol fake-up: unavailable in the worker: test worker cannot run up"]),
    ("tcp-pickle,fake-up2,fake-up", "up", "fake-up25-buffers",
     ["protocol fake-up: unavailable in the worker"]),
    ("tcp-pickle,nbt-unknown", "", "tcp-pickle5-buffers", ["protocol nbt-unknown skipped: unknown protocol"]),
    ("tcp-pickle,shm-pickle", "", "tcp-pickle5-buffers",
     ["protocol shm-pickle skipped: unknown protocol (pip install %s provides it)" % (REPO_ROOT / "plugins" / "nb-shm")]),
    ("nbt-unknown,fake-up", "", "fake-up5-buffers",
     ["protocol nbt-unknown cannot be the fallback: unknown protocol; using tcp-pickle"]),
    ("fake-up", "", "tcp-pickle5-buffers",
     ["protocol fake-up cannot be the fallback: it cannot be a fallback (it needs an established connection); using tcp-pickle"]),
    ("fake-hostless,fake-up", "", "fake-up5-buffers",
     ["protocol fake-hostless cannot be the fallback: needs /dev/nbt; using tcp-pickle"]),
    ("tcp-pickle,fake-up,fake-decline", "", "fake-up5-buffers",
     ["protocol fake-decline: the worker declined: RuntimeError: declined by the test worker"]),
    ("tcp-pickle,fake-decline,fake-up", "", "fake-up5-buffers", []),
    ("tcp-pickle,fake-hostless", "", "tcp-pickle5-buffers",
     ["protocol fake-hostless skipped: unavailable on the host: needs /dev/nbt"]),
    ("tcp-pickle,fake-offerfail", "", "tcp-pickle5-buffers",
     ["protocol fake-offerfail: could not be offered: offer failed on purpose"]),
    ("tcp-pickle,fake-up,fake-completefail", "", "fake-up5-buffers",
     ["protocol fake-completefail: could not be completed: complete failed on purpose"]),
    ("tcp-pickle,fake-importfail", "", "tcp-pickle5-buffers",
     ["protocol fake-importfail: unavailable in the worker: cannot import nbt_fakeproto.importfail: simulated missing dependency"]),
]


def check_case(registry, monkeypatch, caplog, backend, config, protocols, unavailable, expected, logs):
    monkeypatch.setenv("NBT_FAKE_UNAVAILABLE", unavailable)
    caplog.set_level(logging.INFO, logger="nbcore")
    with open_backend("demo", config=config, backend=backend, protocol=protocols) as env:
        assert env.protocol == expected
        assert env.call("operator:add", 2, 3) == 5
        assert env.call("operator:mul", "ab", 100_000) == "ab" * 100_000
    for line in logs:
        assert line in caplog.text, caplog.text
    if not logs:
        assert "skipped" not in caplog.text and "declined" not in caplog.text and "cannot" not in caplog.text


@pytest.mark.parametrize("protocols, unavailable, expected, logs", MATRIX, ids=[m[0] + ("/" + m[1] if m[1] else "") for m in MATRIX])
def test_matrix_in_process(registry, monkeypatch, caplog, protocols, unavailable, expected, logs):
    check_case(registry, monkeypatch, caplog, "python", EMPTY, protocols, unavailable, expected, logs)


@pytest.mark.parametrize("case", [2, 3, 10, 15], ids=lambda i: MATRIX[i][0] + ("/" + MATRIX[i][1] if MATRIX[i][1] else ""))
def test_matrix_venv(registry, monkeypatch, caplog, case):
    check_case(registry, monkeypatch, caplog, "venv", NUMPY, *MATRIX[case])


def test_protocol_list_from_the_environment(registry, monkeypatch):
    monkeypatch.setenv("NERFBASELINES_PROTOCOL", "tcp-pickle,fake-up")
    with open_backend("demo", config=EMPTY, backend="python") as env:
        assert env.protocol == "fake-up5-buffers"
    monkeypatch.setenv("NBCORE_PROTOCOL", "tcp-pickle")
    with open_backend("demo", config=EMPTY, backend="python") as env:
        assert env.protocol == "tcp-pickle5-buffers"
    with open_backend("demo", config=dict(EMPTY, protocol="tcp-pickle,fake-up"), backend="python") as env:
        assert env.protocol == "tcp-pickle5-buffers", "the environment variable wins over the config"
    monkeypatch.delenv("NBCORE_PROTOCOL")
    monkeypatch.delenv("NERFBASELINES_PROTOCOL")
    with open_backend("demo", config=dict(EMPTY, protocol="tcp-pickle,fake-up"), backend="python") as env:
        assert env.protocol == "fake-up5-buffers"


def test_protocol_the_worker_does_not_have():
    """The host offers only what the worker reported; a missing entry is logged and skipped."""
    a, b = socket.socketpair()
    host_side, worker_side = SocketChannel(a, "tcp-pickle"), SocketChannel(b, "tcp-pickle")
    result = {}
    thread = threading.Thread(target=lambda: result.update(ch=worker_negotiate(worker_side, {"tcp-pickle": tcp_worker})))
    thread.start()
    lines = []
    channel, hello = host_negotiate(host_side, [("fake-up", FakeUpgrade("fake-up", "x"))], lines.append)
    thread.join(5)
    assert channel is host_side and result["ch"] is worker_side
    assert lines == ["fake-up: not installed in the worker's environment"]
    assert hello["protocols"] == {"tcp-pickle": None}
    a.close()
    b.close()


def test_host_and_worker_learn_each_others_versions():
    """Both sides keep the other's Python and numpy versions on the channel they go on with."""
    from nbcore.worker.versions import numpy_version, python_version

    a, b = socket.socketpair()
    host_side, worker_side = SocketChannel(a, "tcp-pickle"), SocketChannel(b, "tcp-pickle")
    result = {}
    thread = threading.Thread(target=lambda: result.update(ch=worker_negotiate(worker_side, {"tcp-pickle": tcp_worker})))
    thread.start()
    channel, hello = host_negotiate(host_side, [], lambda line: None)
    thread.join(5)
    mine = {"python": python_version(), "numpy": numpy_version()}
    assert hello["python"] == mine["python"] and hello["numpy"] == mine["numpy"]
    assert channel.peer == mine and result["ch"].peer == mine
    a.close()
    b.close()


def test_a_worker_that_does_not_say_its_numpy_is_still_served():
    """An older worker's hello has no numpy entry; an older host's answer no versions."""
    a, b = socket.socketpair()
    host_side, worker_side = SocketChannel(a, "tcp-pickle"), SocketChannel(b, "tcp-pickle")
    thread = threading.Thread(target=lambda: host_negotiate(host_side, [], lambda line: None))
    thread.start()
    worker_side.send({"python": "3.8.0", "pickle_protocol": 4, "protocols": {"tcp-pickle": None}})
    answer = worker_side.recv()
    assert answer["pickle_protocol"] == 4 and answer["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert worker_side.recv() == {"op": "done"}
    thread.join(5)
    assert host_side.peer == {"python": "3.8.0", "numpy": None}
    a.close()
    b.close()


def force_worker_pickle(monkeypatch, maximum):
    original = host.worker_launch

    def worker_launch(*args, **kwargs):
        launch = original(*args, **kwargs)
        launch.variables["NBCORE_PICKLE_PROTOCOL_MAX"] = str(maximum)
        return launch

    monkeypatch.setattr(host, "worker_launch", worker_launch)


@pytest.mark.parametrize("protocols, expected", [("tcp-pickle", "tcp-pickle4"), ("tcp-pickle,fake-up", "fake-up4")])
def test_worker_with_a_lower_pickle_protocol(registry, monkeypatch, protocols, expected):
    np = pytest.importorskip("numpy")
    force_worker_pickle(monkeypatch, 4)
    with open_backend("demo", config=NUMPY, backend="venv", protocol=protocols) as env:
        assert env.protocol == expected
        assert env.connection.channel.pickle_protocol == 4
        a = np.arange(3 * 1080 * 1920, dtype=np.float32).reshape(1080, 1920, 3)
        np.testing.assert_array_equal(env.call("numpy:add", a, a), a * 2)
        ones = env.call("numpy:ones", (1080, 1920, 1), "float32")
        assert ones.shape == (1080, 1920, 1) and ones.dtype == np.float32 and float(ones.sum()) == 1080 * 1920
        assert env.call("platform:python_version") == "%d.%d.%d" % sys.version_info[:3]


def test_host_with_a_lower_pickle_protocol(registry, monkeypatch):
    """The host's own maximum counts too (here both ends read the same variable)."""
    monkeypatch.setenv("NBCORE_PICKLE_PROTOCOL_MAX", "3")
    with open_backend("demo", config=EMPTY, backend="python", protocol="tcp-pickle") as env:
        assert env.protocol == "tcp-pickle3"
        assert env.call("operator:add", [1], [2]) == [1, 2]
