"""The register object, capabilities between plugins, and selection policy declared by providers."""
import socket
from pathlib import Path

import pytest

from nbcore.errors import PluginError
from nbcore.host.selection import choose_backend, default_protocols, plan_protocols
from nbcore.plugin.store import make_environment
from nbcore.plugin import (FALLBACK, UPGRADE, CapabilityMissing, EnvironmentSpec, ListenAddress,
                           ProtocolProvider, UserError)
from nbcore.plugin import registry as plugins
from nbcore.testing import FakeBackend, registry_with

pytestmark = pytest.mark.usefixtures("clean_env")


class Backend(FakeBackend):
    def __init__(self, name, priority=None):
        super().__init__(name, auto_priority=priority)


class Upgrade(ProtocolProvider):
    worker_module = "nbtest_nowhere"

    def __init__(self, name, preference=0):
        self.name = name
        self.preference = preference

    def check_available(self):
        return None

    def host_offer(self, channel):
        raise NotImplementedError

    def host_complete(self, channel, state, reply):
        raise NotImplementedError




def test_one_register_hook_offers_every_kind_and_attributes_it():
    marker = object()

    def nbcore_register(register):
        register.backend(Backend("b-one"))
        register.protocol(Upgrade("p-one"))
        register.capability("thing-maker", marker)

    registry = registry_with(register=nbcore_register, name="nbtest_register")
    assert registry.capability("thing-maker") is marker
    info = registry.plugins["nbtest_register"]
    assert (info.backends, info.protocols, info.capabilities) == (["b-one"], ["p-one"], ["thing-maker"])
    assert info.hooks == ["nbcore_register"]
    assert registry.plugin_of("capability", "thing-maker") is info


def test_a_missing_capability_names_the_package_that_provides_it():
    registry = plugins.build_registry(autoload=False)
    with pytest.raises(CapabilityMissing, match=r"'conda-prefix'.*pip install ./plugins/nb-conda provides it"):
        registry.capability("conda-prefix")
    with pytest.raises(CapabilityMissing, match="no known plugin provides it"):
        registry.capability("nosuch")
    assert issubclass(CapabilityMissing, UserError)


@pytest.mark.parametrize("hook, message", [
    (lambda r: r.backend(object()), "registered a backend that is not a BackendProvider (got object)"),
    (lambda r: r.protocol(Backend("x")), "registered a protocol that is not a ProtocolProvider (got Backend)"),
    (lambda r: r.backend(Backend("Bad Name")), "registered the backend name 'Bad Name'"),
    (lambda r: r.capability(3, object()), "registered the capability name 3"),
    (lambda r: (r.capability("c", 1), r.capability("c", 2)), "registers capability 'c', already provided by plugin"),
    (lambda r: r.backend(Backend("venv")), "registers backend 'venv', already provided by plugin 'nbcore.builtin.venv'"),
])
def test_what_is_registered_is_checked_and_the_error_names_the_plugin(hook, message):
    def nbcore_register(register):
        hook(register)

    with pytest.raises(PluginError, match="^plugin 'nbtest_bad' " + message.replace("(", r"\(").replace(")", r"\)")):
        registry_with(register=nbcore_register, name="nbtest_bad")


def test_protocol_roles_must_match_the_methods():
    class Claims(Upgrade):
        roles = frozenset([FALLBACK])

    class Inferred(Upgrade):
        pass

    assert Inferred.roles == {UPGRADE}

    def nbcore_register(register):
        register.protocol(Claims("claims"))

    with pytest.raises(PluginError, match="has the role 'fallback' but does not implement listen"):
        registry_with(register=nbcore_register, name="nbtest_register")


def choose(registry, spec):
    return choose_backend(registry, lambda b: make_environment(Path("/nonexistent"), b, "demo", spec), spec)[0].name


def test_automatic_choice_follows_declared_priorities():
    def nbcore_register(register):
        register.backend(Backend("low", 5))
        register.backend(Backend("high", 90))
        register.backend(Backend("never"))

    registry = registry_with(register=nbcore_register, name="nbtest_register")
    assert [b.name for b in registry.auto_backends()][:2] == ["high", "venv"]
    assert "never" not in [b.name for b in registry.auto_backends()] and "python" not in [
        b.name for b in registry.auto_backends()]
    assert choose(registry, EnvironmentSpec()) == "high"
    assert choose(registry, EnvironmentSpec(backends=("low",))) == "low"


def test_a_spec_with_one_backend_section_prefers_that_backend():
    def nbcore_register(register):
        register.backend(Backend("only-asked", None))
        register.backend(Backend("high", 90))

    registry = registry_with(register=nbcore_register, name="nbtest_register")
    assert choose(registry, EnvironmentSpec(sections={"only-asked": {}})) == "only-asked"
    assert choose(registry, EnvironmentSpec(sections={"only-asked": {}, "high": {}})) == "high"
    assert choose(registry, EnvironmentSpec(sections={"only-asked": {}}, backends=("venv",))) == "venv"


def test_default_protocol_list_is_the_fallback_then_upgrades_most_preferred_last():
    def nbcore_register(register):
        register.protocol(Upgrade("up-low", 1))
        register.protocol(Upgrade("up-high", 100))

    registry = registry_with(register=nbcore_register, name="nbtest_register")
    assert default_protocols(registry) == "tcp-pickle,up-low,up-high"
    fallback, candidates = plan_protocols(registry, default_protocols(registry).split(","))
    assert fallback.name == "tcp-pickle" and [name for name, _ in candidates] == ["up-high", "up-low"]


def test_an_upgrade_protocol_asked_to_be_the_fallback_gives_way_to_the_preferred_fallback(caplog):
    def nbcore_register(register):
        register.protocol(Upgrade("up"))

    registry = registry_with(register=nbcore_register, name="nbtest_register")
    fallback, candidates = plan_protocols(registry, ["up", "tcp-pickle"])
    assert fallback.name == "tcp-pickle" and candidates == []
    assert "protocol up cannot be the fallback: it cannot be a fallback" in caplog.text


# identity -----------------------------------------------------------------------

def test_the_install_script_folder_is_part_of_the_hash():
    script = "pip install -e ."
    one = EnvironmentSpec(install_script=script, base_dir="/projects/one")
    two = EnvironmentSpec(install_script=script, base_dir="/projects/two")
    assert one.identity("venv") != two.identity("venv")
    assert EnvironmentSpec(base_dir="/projects/one").identity("venv") == EnvironmentSpec(
        base_dir="/projects/two").identity("venv"), "without an install script the folder does not matter"


def test_a_provider_adds_to_the_hash(tmp_path):
    class Locked(Backend):
        content = "lock-1"

        def identity(self, spec):
            return {"lock": self.content}

    backend = Locked("locked")
    first = make_environment(tmp_path, backend, "demo", EnvironmentSpec())
    backend.content = "lock-2"
    second = make_environment(tmp_path, backend, "demo", EnvironmentSpec())
    assert first.spec_hash != second.spec_hash and first.path != second.path


# listen address -----------------------------------------------------------------

def test_a_wildcard_bind_advertises_an_address_the_worker_can_reach(monkeypatch):
    monkeypatch.setenv("NBCORE_BIND", "0.0.0.0")
    monkeypatch.delenv("NBCORE_ADVERTISE", raising=False)
    where = ListenAddress.from_environment()
    assert where.bind == "0.0.0.0" and where.advertised_host() not in ("0.0.0.0", "")
    monkeypatch.setenv("NBCORE_ADVERTISE", "localhost")
    assert ListenAddress.from_environment().advertised_host() == "localhost"
    assert ListenAddress(bind="127.0.0.1").advertised_host() == "127.0.0.1"


def test_tcp_pickle_listens_in_the_port_range_and_advertises(monkeypatch):
    from nbcore.builtin.tcp_pickle import TcpPickle

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    taken = socket.socket()
    taken.bind(("127.0.0.1", free))
    try:
        monkeypatch.setenv("NBCORE_PORTS", "%d-%d" % (free, free + 1))
        monkeypatch.setenv("NBCORE_ADVERTISE", "localhost")
        listener = TcpPickle().listen(ListenAddress.from_environment())
        try:
            assert listener.address == "localhost:%d" % (free + 1)
            assert listener.sock.getsockname() == ("127.0.0.1", free + 1)
        finally:
            listener.close()
        monkeypatch.setenv("NBCORE_PORTS", "%d-%d" % (free, free))
        with pytest.raises(Exception, match=r"cannot listen for the worker on 127.0.0.1 port %d-%d" % (free, free)):
            TcpPickle().listen(ListenAddress.from_environment())
    finally:
        taken.close()
    monkeypatch.setenv("NBCORE_PORTS", "9-3")
    with pytest.raises(UserError, match="NBCORE_PORTS='9-3' is not a port range"):
        ListenAddress.from_environment()


def test_the_control_connection_gets_keepalive_probes():
    from nbcore.worker.channel import SocketChannel

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        SocketChannel(client, "tcp-pickle").keepalive(30)
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30000
    finally:
        for s in (client, accepted, server):
            s.close()


def test_a_launch_offers_the_worker_code_as_a_folder_and_as_a_content_addressed_archive(nbcore_home):
    import hashlib
    import io
    import tarfile

    from nbcore.host.launch import worker_launch
    from nbcore.plugin import get_registry

    tcp = get_registry().protocols["tcp-pickle"]
    launch = worker_launch("127.0.0.1:1", b"s" * 32, tcp, [])
    data, digest = launch.worker_archive()
    assert hashlib.sha256(data).hexdigest() == digest and launch.worker_archive() == (data, digest)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert "nbcore/worker/serve.py" in names and all((launch.worker_path / n).exists() for n in names)


def test_a_capability_with_an_interface_must_implement_it():
    from nbcore.plugin import CondaPrefixCapability, DockerImageCapability
    from nbcore.plugin.capabilities import INTERFACES

    assert INTERFACES == {"docker-image": DockerImageCapability, "conda-prefix": CondaPrefixCapability}

    def nbcore_register(register):
        register.capability("docker-image", object())

    with pytest.raises(PluginError, match=r"plugin 'nbtest_register' offers the capability 'docker-image' with a "
                                          r"object, which is not a nbcore.plugin.DockerImageCapability"):
        registry_with(register=nbcore_register, name="nbtest_register")

    class Images(DockerImageCapability):
        def image_for(self, name, spec):
            return None

        def digest(self, name, credentials=None, plain_http=False):
            return None

        def fingerprint(self, spec):
            return None

    def nbcore_register(register):  # noqa: F811 (a second plugin's hook)
        register.capability("docker-image", Images())

    assert isinstance(registry_with(register=nbcore_register, name="nbtest_register").capability("docker-image"), DockerImageCapability)


def test_first_party_capabilities_implement_their_interfaces():
    from nbcore.plugin.capabilities import INTERFACES

    registry = plugins.get_registry()
    for name, interface in INTERFACES.items():
        if name in registry.capabilities:
            assert isinstance(registry.capabilities[name], interface), name


def test_a_backend_plan_is_prepared_once_per_environment(tmp_path):
    class Planned(Backend):
        prepared = 0

        def prepare(self, env):
            Planned.prepared += 1
            return {"image": "img-" + env.name}

    backend = Planned("planned")
    env = make_environment(tmp_path, backend, "demo", EnvironmentSpec())
    assert backend.plan(env) == {"image": "img-demo"} and backend.plan(env) is backend.plan(env)
    assert Planned.prepared == 1
    other = make_environment(tmp_path, backend, "demo", EnvironmentSpec())  # another open: planned again
    backend.plan(other)
    assert Planned.prepared == 2 and other == env
    assert Backend("plain").prepare(env) is None  # the default plans nothing
