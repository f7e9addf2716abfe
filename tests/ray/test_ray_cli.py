"""The command line on Ray: ``envs`` lists every node's store, ``shell`` runs on the env's node, ``--json`` stays clean."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
import yaml

import nbcore

pytestmark = pytest.mark.ray

NOISY_MODULE = '''
import sys


def noisy():
    print("printed by the worker")
    sys.stderr.write("written to the worker's stderr\\n")
    return {"answer": 42}
'''


def nbcore_cli(*args, config, **kwargs):
    """``nbcore ARGS -c CONFIG`` in the test's network namespace, against the test cluster (text mode)."""
    return subprocess.run([sys.executable, "-m", "nbcore", args[0], "-c", str(config), *args[1:]],
                          capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture
def config_file(project, ray_config):
    """A config file in the project folder with ``e`` on the second node and ``bare_a`` (no packages) on the head."""
    data = ray_config("nodeB")
    data["environments"].update(ray_config("nodeA", name="bare_a", packages=())["environments"])
    path = project / "nbcore.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_envs_backend_ray_lists_each_nodes_store_as_one_json_document(ray_cluster, config_file):
    for name in ("e", "bare_a"):
        with nbcore.open_backend(name, config=str(config_file)):
            pass
    result = nbcore_cli("envs", "--backend", "ray", "--json", config=config_file)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)  # one document: nothing else on stdout
    found = {}
    for resource in ("nodeA", "nodeB"):
        node_id, home = ray_cluster.node_ids[resource], str(ray_cluster.homes[resource])
        on_node = [r for r in records if r["node_id"] == node_id]
        assert on_node and all(r["home"] == home and r["node"] == node_id[:12] and r["node_ip"] == "127.0.0.1"
                               and r["path"].startswith(home) for r in on_node), records
        assert not any(r["backend"] == "ray" for r in on_node), "the host's bookkeeping of placements is no env"
        found[resource] = {(r["name"], r["backend"], r["ready"]) for r in on_node}
    assert ("e", "venv", True) in found["nodeB"] and ("bare_a", "venv", True) in found["nodeA"]

    table = nbcore_cli("envs", "--backend", "ray", config=config_file)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["NODE", "NODE_IP", "HOSTNAME", "HOME"], header
    node_b = ray_cluster.node_ids["nodeB"][:12]
    assert any(row.split()[0] == node_b and " e " in row for row in rows), table.stdout


def test_call_json_on_ray_prints_one_json_document(ray_cluster, config_file, project):
    (project / "noisy.py").write_text(NOISY_MODULE)
    result = nbcore_cli("call", "e", "noisy:noisy", "--json", config=config_file)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["result"] == {"answer": 42} and document["backend"] == "ray"


def test_shell_on_ray_relays_stdin_output_and_exit_code_inside_the_env(ray_cluster, config_file, pid_alive):
    script = ('read line; echo "stdin:$line"; echo "cwd:$(pwd)"; echo "err-line" >&2; echo "pid:$$"; '
              'python -c "import sys; print(\'prefix:\' + sys.prefix)"; exit 7')
    result = nbcore_cli("shell", "e", "--", "sh", "-c", script, config=config_file, input="hello\n")
    assert result.returncode == 7, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    home_b = str(ray_cluster.homes["nodeB"])
    assert lines["stdin"] == "hello"
    assert lines["cwd"].startswith(os.path.join(home_b, "ray", "project")), "runs in the shipped project folder"
    assert lines["prefix"].startswith(os.path.join(home_b, "envs", "venv")), "runs inside the env on the second node"
    assert "err-line" in result.stderr and "err-line" not in result.stdout
    assert not pid_alive(int(lines["pid"]))


def test_shell_on_ray_command_ends_when_the_host_dies(ray_cluster, config_file, wait_until, pid_alive):
    host = subprocess.Popen([sys.executable, "-m", "nbcore", "shell", "-c", str(config_file), "e", "--", "sh", "-c",
                             "echo pid:$$; sleep 60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = host.stdout.readline()
        assert line.startswith("pid:"), "the command printed no pid (host exit code %s)" % host.poll()
        pid = int(line.split(":")[1])
        os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)
        wait_until(lambda: not pid_alive(pid), 30, "the command to end with its host")
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()


def test_shell_on_ray_ctrl_c_without_a_terminal_ends_the_command(ray_cluster, config_file, wait_until, pid_alive):
    host = subprocess.Popen([sys.executable, "-m", "nbcore", "shell", "-c", str(config_file), "e", "--", "sh", "-c",
                             "echo pid:$$; sleep 60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = host.stdout.readline()
        assert line.startswith("pid:"), "the command printed no pid (host exit code %s)" % host.poll()
        pid = int(line.split(":")[1])
        host.send_signal(signal.SIGINT)
        code = host.wait(30)
        wait_until(lambda: not pid_alive(pid), 30, "the command to end after Ctrl-C on the host")
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
    stderr = host.stderr.read()
    assert code == 130 and "Traceback" not in stderr, (code, stderr)


def test_shell_on_ray_command_not_found_is_127_in_one_line(ray_cluster, config_file):
    result = nbcore_cli("shell", "e", "--", "no-such-command", config=config_file)
    assert result.returncode == 127, result.stderr
    assert "nbcore: error: no-such-command: command not found in e" in result.stderr


#: Runs ``nbcore shell`` on the terminal it is given and says whether the terminal came back as it was.
TERMINAL_HOST = '''
import subprocess, sys, termios
before = termios.tcgetattr(0)
code = subprocess.call([sys.executable, "-m", "nbcore", "shell", "-c", sys.argv[1], "e", "--", "sh", "-c",
                        "stty size; echo ready; read line; echo got:$line; "
                        "for i in $(seq 150); do stty size; sleep 0.2; done; echo not-interrupted"])
print("restored" if termios.tcgetattr(0) == before else "changed", code)
'''


def _read_until(fd, needle, deadline, seen):
    """``seen`` plus what ``fd`` gives until ``needle`` is in it (None: until the other side closes), boundedly."""
    while (needle is None or needle not in seen) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_shell_on_ray_with_a_terminal_gets_a_pty_of_the_hosts_size_its_changes_and_ctrl_c(ray_cluster, config_file):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    host = subprocess.Popen([sys.executable, "-c", TERMINAL_HOST, str(config_file)], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    deadline = time.monotonic() + 120
    try:
        seen = _read_until(master, b"ready", deadline, b"")
        assert b"ready" in seen, seen
        os.write(master, b"hello\r")
        seen = _read_until(master, b"got:hello", deadline, seen)
        assert b"got:hello" in seen, seen
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.killpg(host.pid, signal.SIGWINCH)  # what the terminal sends its foreground processes on a resize
        seen = _read_until(master, b"40 120", deadline, seen)
        assert b"40 120" in seen, "the new size reached the node's pty: %r" % seen
        os.write(master, b"\x03")  # Ctrl-C: raw mode hands it to the node's pty, which interrupts the command
        seen = _read_until(master, None, deadline, seen)  # to the end: the host's last line
        host.wait(max(1, deadline - time.monotonic()))
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert "33 101" in text, "the node's pty has the host terminal's size: %r" % text
    assert "not-interrupted" not in text and re.search(r"restored 130\b", text), text


#: Runs ``nbcore shell CONFIG ENV -- CMD...`` on the terminal it is given.
SHELL_ON_TERMINAL = '''
import subprocess, sys
sys.exit(subprocess.call([sys.executable, "-m", "nbcore", "shell", "-c", sys.argv[1], sys.argv[2], "--"] + sys.argv[3:]))
'''


def test_shell_on_ray_in_a_docker_env_gets_a_terminal_inside_the_container(ray_cluster, project):
    from nbcore.testing import engine_unavailable

    docker = nbcore.get_registry().backends.get("docker")
    reason = "nb-docker is not installed" if docker is None else docker.check_available()
    if reason:
        engine_unavailable("docker", reason)
    image = "nbcore-ci/python:3.11"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        engine_unavailable("docker", "the image %s is missing: run scripts/provision-docker" % image)
    config = project / "docker-on-ray.yaml"
    config.write_text(yaml.safe_dump({"environments": {"d": {
        "docker": {"image": image},
        "ray": {"backend": "docker", "num_cpus": 0, "resources": {"nodeB": 0.01}}}}}))
    master, slave = pty.openpty()
    host = subprocess.Popen([sys.executable, "-c", SHELL_ON_TERMINAL, str(config), "d", "sh", "-c",
                             "if test -t 0; then echo inside:terminal; else echo inside:pipe; fi; "
                             "test -f /.dockerenv && echo in:container"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        seen = _read_until(master, None, time.monotonic() + 120, b"")
        code = host.wait(30)
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert code == 0, text
    assert "inside:terminal" in text, "docker run got no -t: %r" % text
    assert "in:container" in text, "runs in the container: %r" % text
