"""Opening an environment as a user waits for it: start to first result in this process, open to first result
in a fresh host process phase by phase, the whole ``nbcore call``, and their references (the environment's and
the host's ``python -c pass``, the bare open)."""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...errors import UserError
from ...host.launch import staged_worker_path, start
from ...plugin.backend import WorkerLaunch
from .references import TARGETS, median_ms

#: Runs in a fresh host process: open the environment phase by phase, call, print the phases' seconds.
OPEN_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from nbcore.host.launch import prepare, start
t1 = time.perf_counter()
from nbcore.plugin.registry import get_registry
get_registry()
t2 = time.perf_counter()
name, config, backend, protocol = json.loads(sys.argv[1])
config, provider, env = prepare(name, config, backend)
t3 = time.perf_counter()
remote_env = start(config, provider, env, protocol)
t4 = time.perf_counter()
remote_env.call("nbcore.worker.bench_targets:noop")
t5 = time.perf_counter()
remote_env.close()
print(json.dumps({"import": t1 - t0, "plugins": t2 - t1, "config_and_store": t3 - t2, "worker": t4 - t3,
                  "first_call": t5 - t4}))
"""

#: Runs in a fresh host process: the least any open could do, timed as :data:`OPEN_CHILD` times nbcore's. A bare
#: host (subprocess, socket and pickle; no framework) starts the environment's Python on :data:`BARE_WORKER`,
#: sends it one pickled call on the connection it makes back to the listening socket this process was given,
#: and prints the seconds until the answer.
BARE_OPEN_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import pickle, socket, subprocess
listener_fd, argv, env, cwd = json.loads(sys.argv[1])
listener = socket.socket(fileno=listener_fd)
listener.settimeout(0.1)
process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
while True:
    try:
        connection, _ = listener.accept()
        break
    except socket.timeout:
        if process.poll() is not None:
            sys.exit("the bare worker exited with code %d before it connected" % process.returncode)
connection.settimeout(None)
stream = connection.makefile("rwb")
pickle.dump(("call", "noop"), stream)
stream.flush()
pickle.load(stream)
t1 = time.perf_counter()
process.wait()
print(t1 - t0)
"""
#: The environment's side of :data:`BARE_OPEN_CHILD`: connect back, answer one call.
BARE_WORKER = """
import os, pickle, socket
stream = socket.create_connection(("127.0.0.1", int(os.environ["NBCORE_BENCH_PORT"]))).makefile("rwb")
pickle.dump(pickle.load(stream), stream)
stream.flush()
"""


def measure_start(config, provider, env, protocol, count):
    """Median seconds from opening an installed env to the first call's result, and of ``python -c pass``."""
    starts, pythons = [], []
    for _ in range(count):
        t = time.perf_counter()
        remote_env = start(config, provider, env, protocol)
        remote_env.call(TARGETS + ":noop")
        starts.append(time.perf_counter() - t)
        remote_env.close()
        pythons.append(python_pass_seconds(provider, env))
    return statistics.median(starts), statistics.median(pythons)


def python_pass_seconds(provider, env):
    """Seconds of the environment's ``python -c pass``, started by the backend as it starts the worker."""
    launch = WorkerLaunch(worker_path=staged_worker_path(), cwd=Path.cwd(), variables={}, python_args=["-c", "pass"])
    t = time.perf_counter()
    process = provider.start_worker(env, launch)
    process.wait(60)
    seconds = time.perf_counter() - t
    process.kill()
    return seconds


def _open_config(config):
    """``config`` as the fresh host process and ``nbcore call`` take it: an absolute path, a dict, or None."""
    if config is None or isinstance(config, dict):
        return config
    return os.path.abspath(str(config))


def _bare_open_argv(provider, env, listener):
    """The fresh host process of :data:`BARE_OPEN_CHILD` for ``env`` and the listening socket ``listener`` (passed
    on to it), or None when the backend runs no commands."""
    if "command" not in provider.features:
        return None
    command = provider.command(env, [provider.worker_python(env), "-c", BARE_WORKER],
                               {"NBCORE_BENCH_PORT": str(listener.getsockname()[1])}, None)
    return [sys.executable, "-c", BARE_OPEN_CHILD,
            json.dumps([listener.fileno(), command.argv, command.env, command.cwd])]


def measure_open(env_name, config, provider, env, backend, protocol, count):
    """Medians of open-to-first-result in a fresh host process (with its phases), of ``nbcore call``, and of
    their references: the environment's ``python -c pass``, the host's, and the same open by a bare host and
    worker (:data:`BARE_OPEN_CHILD`, on backends that run commands) (all interleaved)."""
    config = _open_config(config)
    child_argv = [sys.executable, "-c", OPEN_CHILD, json.dumps([env_name, config, backend, protocol])]
    phases, calls, pythons, host_pythons, bare_opens = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="nbcore-bench-") as folder, \
            socket.create_server(("127.0.0.1", 0)) as listener:
        bare_argv = _bare_open_argv(provider, env, listener)
        if isinstance(config, dict):  # nbcore call reads a file: JSON is YAML
            path = os.path.join(folder, "nbcore.yaml")
            with open(path, "w") as out:
                json.dump(config, out)
            config = path
        cli_argv = [sys.executable, "-m", "nbcore", "call", env_name, TARGETS + ":noop"]
        cli_argv += (["--backend", backend] if backend else []) + (["-c", config] if config else [])
        cli_argv += ["--protocol", protocol] if protocol else []
        for _ in range(count):
            out = subprocess.run(child_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
            if out.returncode != 0:
                raise UserError("the open-to-first-result run failed: %s" % out.stderr.decode(errors="replace")
                                .strip().splitlines()[-1:])
            phases.append(json.loads(out.stdout))
            t = time.perf_counter()
            out = subprocess.run(cli_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            calls.append(time.perf_counter() - t)
            if out.returncode != 0:
                raise UserError("nbcore call failed: %s" % out.stderr.decode(errors="replace").strip())
            pythons.append(python_pass_seconds(provider, env))
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=False)
            host_pythons.append(time.perf_counter() - t)
            if bare_argv is not None:
                out = subprocess.run(bare_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                                     pass_fds=(listener.fileno(),))
                if out.returncode != 0:
                    raise UserError("the bare open failed: %s" % out.stderr.decode(errors="replace")
                                    .strip().splitlines()[-1:])
                bare_opens.append(float(out.stdout))
    phase_ms = {name: median_ms([p[name] for p in phases]) for name in phases[0]}
    return {
        "open_to_first_result_ms": median_ms([sum(p.values()) for p in phases]),
        "open_phases_ms": phase_ms,
        "cli_call_ms": median_ms(calls),
        "python_start_ms": median_ms(pythons),
        "host_python_start_ms": median_ms(host_pythons),
        "bare_open_ms": median_ms(bare_opens) if bare_opens else None,
    }
