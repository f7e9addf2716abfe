"""``kill -9`` of ``nbcore install`` on the docker backend: the build it left in the daemon never takes the final tag.

The build's ``build_script`` connects to a gate on the host (builds use the host's network) and waits
for its answer, so the test decides when a build may go on.  Over the daemon's socket the daemon
cancels the build of an installer that died.  Through a connection that outlives the installer (a
remote daemon behind a relay) the build goes on: the rebuild must not share its result with it.
"""
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from nbcore.host.launch import prepare
from nbcore.testing import read_line, wait_until
from nbtest import clean_environ, run_nbcore, write

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

#: The daemon the tests use; the relay stands in front of its socket.
DAEMON = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
if not DAEMON.startswith("unix://"):
    pytest.skip("the relay in front of the daemon needs a local socket, not DOCKER_HOST=%s" % DAEMON,
                allow_module_level=True)


class Gate:
    """A TCP server on the host: the first :attr:`hold` build steps that connect wait until :meth:`release` lets
    them through, later ones go through at once."""

    def __init__(self, hold=1):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.hold = hold
        #: The connections held, in the order they came.
        self.waiting = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if len(self.waiting) < self.hold:
                self.waiting.append(conn)
            else:
                self._let_through(conn)

    @staticmethod
    def _let_through(conn):
        try:
            conn.sendall(b"go")
        except OSError:
            pass
        conn.close()

    def release(self, index=0):
        self._let_through(self.waiting[index])

    def waiter_gone(self, index=0) -> bool:
        """Whether the step held as ``index`` closed its connection (its process ended)."""
        try:
            return self.waiting[index].recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self):
        self._server.close()
        for conn in self.waiting:
            self._let_through(conn)


class Relay:
    """``tcp://127.0.0.1:PORT`` in front of the daemon's socket that keeps the daemon's side of a connection
    open after the client went away, as a remote daemon behind a proxy may; it records what the daemon sent."""

    def __init__(self, daemon_socket):
        self._daemon = daemon_socket
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = "tcp://127.0.0.1:%d" % self._server.getsockname()[1]
        self.answers = bytearray()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._daemon)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source, target, from_daemon):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return  # the client went away: the daemon's side stays open
            if from_daemon:
                self.answers += data
            try:
                target.sendall(data)
            except OSError:
                pass  # keep reading what the daemon sends for the dead client

    def close(self):
        self._server.close()


@pytest.fixture
def killed_install(tmp_path, base_images, nbcore_home, docker_api):
    """A project whose environment's build waits at a gate; yields ``(project, env name, gate, install)`` where
    ``install(address)`` starts ``nbcore install`` against that daemon address, waits until its build is at the
    gate, kills it with SIGKILL and returns the ids of the build step's containers.  The environment's images are
    removed afterwards."""
    from nb_docker.images import repository_for

    gate = Gate()
    name = "dk-killed-%s" % uuid.uuid4().hex[:8]
    wait = "import socket; s = socket.create_connection(('127.0.0.1', %d)); assert s.recv(2) == b'go'" % gate.port
    write(tmp_path / "nbcore.yaml", """
        environments:
          %s:
            docker:
              build_script: python3 -c "%s"
        """ % (name, wait))

    def install(address):
        before = {c["Id"] for c in docker_api.containers(all=True)}
        installer = subprocess.Popen([sys.executable, "-m", "nbcore", "install", name, "--backend", "docker"],
                                     cwd=str(tmp_path), env=clean_environ({"DOCKER_HOST": address}),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            while "building image" not in read_line(installer.stderr, 300):
                pass
            wait_until(lambda: gate.waiting, 300, "the build to reach the gate")
        finally:
            installer.kill()
            installer.wait()
        return [c["Id"] for c in docker_api.containers(all=True) if c["Id"] not in before and "pipefail" in c["Command"]]

    yield tmp_path, name, gate, install
    gate.close()
    for image in docker_api.images(name=repository_for(name)):
        for tag in image.get("RepoTags") or ():
            docker_api.remove_image(tag, force=True)


def tags_of(docker_api, name):
    from nb_docker.images import repository_for

    return {tag: image["Id"] for image in docker_api.images(name=repository_for(name))
            for tag in image.get("RepoTags") or ()}


def test_the_daemon_cancels_the_build_of_a_killed_installer(killed_install, docker_api):
    project, name, gate, install = killed_install
    steps = install(DAEMON)
    assert steps, "no container of the build step was found"
    wait_until(gate.waiter_gone, 60, "the daemon to cancel the build")
    wait_until(lambda: not any(docker_api.containers(all=True, filters={"id": step}) for step in steps), 60,
               "the daemon to remove the cancelled step's container")
    assert tags_of(docker_api, name) == {}


def test_a_build_that_outlives_its_installer_never_takes_the_final_tag(killed_install, docker_api):
    project, name, gate, install = killed_install
    relay = Relay(DAEMON[len("unix://"):])
    try:
        install(relay.address)
        time.sleep(3)
        assert not gate.waiter_gone(), "the build of the killed installer did not go on"
        rebuilt = run_nbcore("install", name, "--backend", "docker", cwd=project)
        assert rebuilt.returncode == 0, rebuilt.stderr
        final = tags_of(docker_api, name)
        assert len(final) == 1 and "-attempt-" not in next(iter(final)), final
        gate.release(0)
        wait_until(lambda: b"Successfully tagged" in relay.answers, 120, "the surviving build to end")
    finally:
        relay.close()
    tags = tags_of(docker_api, name)
    (tag, rebuilt_id), = final.items()
    assert tags[tag] == rebuilt_id, "the surviving build took the final tag"
    survivors = [t for t in tags if t != tag]
    assert len(survivors) == 1 and survivors[0].startswith(tag + "-attempt-"), tags
    _, provider, env = prepare(name, str(project / "nbcore.yaml"), backend="docker", install=False)
    provider.remove(env)  # as nbcore gc does
    assert tags_of(docker_api, name) == {}, "removing the environment left the survivor's tag"


def test_the_rebuild_removes_the_tag_a_build_of_a_killed_installer_left(killed_install, docker_api):
    project, name, gate, install = killed_install
    gate.hold = 2  # the rebuild's step waits too, until the surviving build has ended
    relay = Relay(DAEMON[len("unix://"):])
    try:
        install(relay.address)
        rebuild = subprocess.Popen([sys.executable, "-m", "nbcore", "install", name, "--backend", "docker"],
                                   cwd=str(project), env=clean_environ(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: len(gate.waiting) == 2, 300, "the rebuild to reach the gate")
            gate.release(0)
            wait_until(lambda: b"Successfully tagged" in relay.answers, 120, "the surviving build to end")
            left = [t for t in tags_of(docker_api, name) if "-attempt-" in t]
            assert len(left) == 1, tags_of(docker_api, name)
            gate.release(1)
            _, errors = rebuild.communicate(timeout=300)
        finally:
            rebuild.kill()
            rebuild.wait()
    finally:
        relay.close()
    assert rebuild.returncode == 0, errors
    assert "removed the image an interrupted build left %s" % left[0] in errors
    tags = tags_of(docker_api, name)
    assert len(tags) == 1 and "-attempt-" not in next(iter(tags)), tags
