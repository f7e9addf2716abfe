"""The ``slurm`` backend: each worker runs as a job step on a Slurm node, in an environment the node builds.

An open environment holds one allocation (:mod:`nb_slurm.allocation`); the
environment is built on its node as a job step by the node's own backend
(:mod:`nb_slurm.node_build`) unless it is ready, and the worker runs as another
step (:mod:`nb_slurm.steps`) that connects straight back to the host.  The host
and the nodes share ``NBCORE_HOME``, the project folder and the host's Python
(the usual HPC layout: one filesystem mounted everywhere).
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from nbcore.plugin import (BackendProvider, BackendUnavailable, EnvironmentSpec, InstallError, Progress,
                           environment_ready, get_registry, install_environment, list_environments,
                           nbcore_home)
from nbcore.worker import serve

from . import commands
from .allocation import Allocation
from .node_build import REQUEST_VARIABLE
from .steps import SlurmStep

#: ``NBCORE_SLURM_PYTHON``: the Python the nodes run the batch script and builds with (it needs nbcore and
#: nb-slurm); default: the host's own, which the nodes see on the shared filesystem.
PYTHON_VARIABLE = "NBCORE_SLURM_PYTHON"
#: ``NBCORE_SLURM_HOST_NODE``: the Slurm node the host runs on (default: ``SLURMD_NODENAME``, set when the host
#: runs inside a job); a worker on that node may use shared memory.
HOST_NODE_VARIABLE = "NBCORE_SLURM_HOST_NODE"
#: Inner backends that cannot build on a node.
NOT_INNER = ("slurm", "python", "ray")
#: What the host keeps in the folder of an environment on Slurm: where it was built.
BUILT_RECORD = "slurm.json"

_SHARED_FS_HINT = ("nb-slurm needs NBCORE_HOME, the project folder and the host's Python (%s) on a filesystem "
                   "shared by the host and the nodes" % PYTHON_VARIABLE)

STRING_OR_INTEGER = {"type": ["string", "integer"]}

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "backend": {"type": "string", "description": "the backend that builds the environment on the node (default venv)"},
        "partition": {"type": "string"},
        "time": dict(STRING_OR_INTEGER, description="time limit of the allocation: minutes, or [D-]HH:MM:SS"),
        "cpus_per_task": {"type": "integer", "minimum": 1},
        "mem": {"type": ["string", "integer"], "pattern": r"^[0-9]+[KMGTkmgt]?$",
                "description": "memory of the node: megabytes, or with a unit (16G)"},
        "gpus": dict(STRING_OR_INTEGER, description="GPUs: a count, or TYPE:COUNT"),
        "gres": {"type": "string", "description": "generic resources, as in sbatch --gres (gpu:a100:2)"},
        "account": {"type": "string"},
        "qos": {"type": "string"},
        "constraint": {"type": "string"},
        "nodelist": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
        "sbatch_args": {"type": "array", "items": {"type": "string"},
                        "description": "more sbatch options, as written on its command line"},
        "pending_timeout": {"type": ["number", "string"], "minimum": 0, "pattern": r"^\s*[0-9]+(\.[0-9]*)?\s*[smh]?\s*$",
                            "description": "how long the allocation may pend: seconds, or 30s, 10m, 2h; 0: no limit"},
    },
}


def _python() -> str:
    return os.environ.get(PYTHON_VARIABLE) or sys.executable


def _host_node() -> Optional[str]:
    return os.environ.get(HOST_NODE_VARIABLE) or os.environ.get("SLURMD_NODENAME") or None


class SlurmBackend(BackendProvider):
    """Runs each worker as a step of a Slurm allocation with the resources of the spec's ``slurm:`` section;
    the node builds the environment with its own backend (``slurm: {backend: venv}``)."""

    name = "slurm"
    description = "workers as job steps on Slurm nodes (sbatch, srun), built there by the node's own backend"
    config_schema = CONFIG_SCHEMA
    auto_priority = None
    #: A spec with a ``slurm:`` section runs on Slurm unless the user names another backend.
    required_by_section = True
    environment_columns = ("node", "job")

    def check_available(self) -> Optional[str]:
        return commands.unavailable()

    def inner_backend(self, spec) -> str:
        return spec.section(self.name).get("backend") or "venv"

    def check_spec(self, env) -> Optional[str]:
        inner = self.inner_backend(env.spec)
        if inner in NOT_INNER:
            return "slurm.backend cannot be %r; name the backend that builds the environment on the nodes (e.g. venv)" % inner
        provider = get_registry().backends.get(inner)
        if provider is None:
            return "slurm.backend %r is not an installed backend" % inner
        if type(provider).command is BackendProvider.command:
            return ("slurm.backend %s cannot run its workers as Slurm steps (it runs no commands inside its "
                    "environments); use venv, conda or apptainer" % inner)
        return None

    def install(self, env, progress) -> None:
        """Build the environment on a node of an allocation with the spec's resources (nothing to do when the
        shared ``NBCORE_HOME`` has it ready)."""
        provider, inner = self._inner(env)
        record = {"backend": provider.name, "path": str(inner.path), "node": None, "job": None}
        if not environment_ready(provider, inner):
            allocation = Allocation.request(env.name, env.spec.section(self.name), _python(), progress)
            try:
                self._build(allocation, provider, inner, progress)
            finally:
                allocation.cancel()
            record.update(node=allocation.node, job=allocation.job_id)
        (env.path / BUILT_RECORD).write_text(json.dumps(record))

    def start_worker(self, env, launch):
        provider, inner = self._inner(env)
        allocation = Allocation.request(env.name, env.spec.section(self.name), _python(), Progress())
        try:
            if not environment_ready(provider, inner):
                self._build(allocation, provider, inner, Progress())
            cwd = str(launch.cwd) if launch.cwd is not None else str(inner.path)
            command = provider.command(inner, [provider.worker_python(inner)] + list(launch.python_args),
                                       self._worker_variables(allocation, launch), cwd)
            address = launch.variables.get(serve.ADDRESS_VARIABLE, "")
            port = int(address.rsplit(":", 1)[1]) if ":" in address else None
            return SlurmStep(allocation, allocation.srun(command.argv, command.cwd or cwd),
                             commands.slurm_environment(base=command.env), port)
        except BaseException:
            allocation.cancel()
            raise

    def shell(self, env, command, launch) -> int:
        """Run ``command`` (the node's shell when empty) inside the environment as a step of a fresh allocation:
        ``srun --pty`` when this process has a terminal, plain pipes otherwise."""
        provider, inner = self._inner(env)
        allocation = Allocation.request(env.name, env.spec.section(self.name), _python(), Progress())
        try:
            if not environment_ready(provider, inner):
                self._build(allocation, provider, inner, Progress())
            terminal = sys.stdin.isatty() and sys.stdout.isatty()
            cwd = str(launch.cwd) if launch.cwd is not None else str(inner.path)
            run = provider.shell_command(inner, list(command), cwd, terminal=terminal)
            argv = allocation.srun(run.argv, run.cwd or cwd, terminal=terminal)
            return subprocess.call(argv, env=commands.slurm_environment(base=run.env))
        finally:
            allocation.cancel()

    def list_environments(self) -> List[dict]:
        """The environments built for Slurm: the node backend's record of each (its ``backend``, ``path``,
        ``ready``), with the ``node`` and ``job`` that built it (both empty when it was ready already)."""
        records = list_environments()
        by_path = {record["path"]: record for record in records}
        out = []
        for record in records:
            if record["backend"] != self.name or not record["ready"]:
                continue
            try:
                built = json.loads((Path(record["path"]) / BUILT_RECORD).read_text())
            except (OSError, ValueError):
                continue
            inner = by_path.get(built["path"]) or dict(record, backend=built["backend"], path=built["path"], ready=False)
            out.append(dict(inner, node=built.get("node") or "", job=built.get("job") or ""))
        return out

    def _inner(self, env):
        """The node backend's provider and its environment of ``env``'s spec (without the ``slurm:`` section)."""
        name = self.inner_backend(env.spec)
        provider = get_registry().backends.get(name)
        if provider is None:
            raise BackendUnavailable("slurm.backend %r is not an installed backend" % name)
        data = {k: v for k, v in env.spec.to_dict().items() if k not in (self.name, "backends")}
        spec = EnvironmentSpec.from_dict(data, source=env.spec.source, base_dir=env.spec.base_dir)
        return provider, install_environment(provider, env.name, spec, Progress(quiet=True), install=False)

    def _build(self, allocation, provider, inner, progress) -> None:
        """Build ``inner`` on the allocation's node as a job step (:mod:`nb_slurm.node_build`)."""
        request = {"backend": provider.name, "name": inner.name, "spec": inner.spec.to_dict(),
                   "source": inner.spec.source, "base_dir": inner.spec.base_dir}
        argv = allocation.srun([_python(), "-m", "nb_slurm.node_build"], cwd=str(nbcore_home()))
        step = "building %s on %s with the %s backend" % (inner.name, allocation.describe(), provider.name)
        try:
            progress.run(argv, step=step, env=commands.slurm_environment({REQUEST_VARIABLE: json.dumps(request)}))
        except InstallError as exc:
            said = [line.split("nbcore: error: ", 1)[1] for line in progress.tail.lines() if "nbcore: error: " in line]
            if said:  # the node's own one-line error, not srun's "task 0: Exited with exit code 1" after it
                raise InstallError("%s failed: %s" % (step, said[-1])) from None
            hint = "; " + _SHARED_FS_HINT if ("execve" in str(exc) or "chdir" in str(exc)) else ""
            raise InstallError("%s%s" % (exc, hint)) from None
        if not environment_ready(provider, inner):
            info = allocation.state()
            raise InstallError("%s did not finish (job %s, reason: %s); %s" % (
                step, commands.state_of(info), info.get("Reason", "None"), _SHARED_FS_HINT))

    def _worker_variables(self, allocation, launch) -> dict:
        """The launch variables for the allocation's node: only the fallback protocol unless it is the host's node."""
        variables = launch.worker_variables()
        if allocation.node != _host_node() and serve.PROTOCOLS_VARIABLE in variables:
            variables[serve.PROTOCOLS_VARIABLE] = variables[serve.PROTOCOLS_VARIABLE].split(",")[0]
        return variables
