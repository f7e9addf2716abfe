"""The command line on Slurm: ``envs`` says where environments were built, ``shell`` runs on a node (``srun
--pty`` with a terminal), ``backends`` says why Slurm is unavailable, ``--json`` stays one document."""
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
import yaml

import nbcore

pytestmark = pytest.mark.slurm

NOISY_MODULE = '''
import sys


def noisy():
    print("printed by the worker")
    sys.stderr.write("written to the worker's stderr\\n")
    return {"answer": 42}
'''


def nbcore_cli(*args, config=None, **kwargs):
    """``nbcore ARGS [-c CONFIG]`` in the test's network namespace, against the test cluster."""
    argv = [sys.executable, "-m", "nbcore", args[0]] + (["-c", str(config)] if config else []) + list(args[1:])
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, **kwargs)


@pytest.fixture
def config_file(project, slurm_config):
    path = project / "nbcore.yaml"
    path.write_text(yaml.safe_dump(slurm_config("n2")))
    return path


def test_envs_backend_slurm_lists_what_was_built_where(slurm_cluster, config_file):
    installed = nbcore_cli("install", "e", config=config_file)
    assert installed.returncode == 0, installed.stderr
    result = nbcore_cli("envs", "--backend", "slurm", "--json", config=config_file)
    assert result.returncode == 0, result.stderr
    records = [r for r in json.loads(result.stdout) if r["name"] == "e"]
    assert records and all(r["backend"] == "venv" and r["ready"] for r in records), records
    table = nbcore_cli("envs", "--backend", "slurm", config=config_file)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:2] == ["NODE", "JOB"], table.stdout


def test_call_json_on_slurm_prints_one_json_document(slurm_cluster, config_file, project):
    (project / "noisy.py").write_text(NOISY_MODULE)
    result = nbcore_cli("call", "e", "noisy:noisy", "--json", config=config_file)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["result"] == {"answer": 42} and document["backend"] == "slurm"
    assert "printed by the worker" in result.stderr and "runs on node n2" in result.stderr


def test_shell_on_slurm_relays_stdin_output_and_exit_code_inside_the_env(slurm_cluster, config_file, project,
                                                                        nbcore_home):
    script = ('read line; echo "stdin:$line"; echo "cwd:$(pwd)"; echo "node:$SLURMD_NODENAME"; echo "err-line" >&2; '
              'python -c "import sys; print(\'prefix:\' + sys.prefix)"; exit 7')
    result = nbcore_cli("shell", "e", "--", "sh", "-c", script, config=config_file, input="hello\n")
    assert result.returncode == 7, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert lines["stdin"] == "hello" and lines["node"] == "n2" and lines["cwd"] == str(project)
    assert lines["prefix"].startswith(os.path.join(nbcore_home, "envs", "venv")), "runs inside the env"
    assert "err-line" in result.stderr and "err-line" not in result.stdout


def _read_all(fd, deadline):
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_shell_on_slurm_with_a_terminal_runs_srun_pty(slurm_cluster, config_file):
    master, slave = pty.openpty()
    host = subprocess.Popen([sys.executable, "-m", "nbcore", "shell", "-c", str(config_file), "e", "--", "sh", "-c",
                             "if test -t 0; then echo inside:terminal; else echo inside:pipe; fi"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        seen = _read_all(master, time.monotonic() + 120)
        code = host.wait(30)
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert code == 0 and "inside:terminal" in text, text


def test_backends_says_why_slurm_is_unavailable(slurm_cluster, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    result = nbcore_cli("backends", "--json", env=dict(os.environ, PATH=str(bare)))
    slurm = next(b for b in json.loads(result.stdout) if b["name"] == "slurm")
    assert not slurm["available"] and "sbatch is not on PATH" in slurm["reason"] and "slurm-client" in slurm["reason"]

    unset = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}  # and no /etc/slurm/slurm.conf here
    result = nbcore_cli("backends", "--json", env=unset)
    slurm = next(b for b in json.loads(result.stdout) if b["name"] == "slurm")
    assert not slurm["available"] and "Slurm has no configuration here" in slurm["reason"]

    conf = tmp_path / "slurm.conf"  # a controller nobody runs
    conf.write_text(slurm_cluster.conf.read_text().replace("SlurmctldPort=6817", "SlurmctldPort=6999"))
    result = nbcore_cli("backends", "--json", env=dict(os.environ, SLURM_CONF=str(conf)))
    slurm = next(b for b in json.loads(result.stdout) if b["name"] == "slurm")
    assert not slurm["available"] and "no Slurm controller" in slurm["reason"] and "SLURM_CONF" in slurm["reason"]

    result = nbcore_cli("backends", "--json")
    assert next(b for b in json.loads(result.stdout) if b["name"] == "slurm")["available"]
