"""What a backend plugin provides: the :class:`BackendProvider` and its worker handles."""
import abc
import collections
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar, Dict, List, Optional

from ..spec import EnvironmentSpec


@dataclasses.dataclass(frozen=True)
class Environment:
    """One environment as a backend sees it: a named spec and the folder reserved for it."""

    name: str
    spec: EnvironmentSpec
    backend: str
    spec_hash: str
    path: Path


@dataclasses.dataclass
class WorkerLaunch:
    """Everything a backend needs to start a worker for the host.

    The backend runs ``python -m nbcore.worker`` (:attr:`python_args`) inside the
    environment with :attr:`worker_path` on ``PYTHONPATH`` (mount it at the same
    path in containers), the variables of :meth:`worker_environment` set, and
    :attr:`cwd` as the working directory.
    """

    worker_path: Path
    cwd: Path
    variables: Dict[str, str]
    python_args: List[str] = dataclasses.field(default_factory=lambda: ["-m", "nbcore.worker"])

    def worker_environment(self, base=None):
        """The environment for the worker process: ``base`` (default ``os.environ``) plus nbcore's variables.

        The host's ``PYTHONPATH``/``PYTHONHOME`` are dropped: the worker sees only its
        own environment's packages and the injected worker code.
        """
        env = dict(os.environ if base is None else base)
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
            env.pop(key, None)
        env.update(self.variables)
        env["PYTHONPATH"] = str(self.worker_path)
        env["PYTHONUNBUFFERED"] = "1"
        return env


class WorkerProcess(abc.ABC):
    """A running worker as the host watches it (a process, a container, a thread)."""

    @abc.abstractmethod
    def poll(self) -> Optional[int]:
        """Return the exit code if the worker has ended, else None (never blocks)."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> Optional[int]:
        """Wait up to ``timeout`` seconds for the worker to end; return its exit code or None."""

    @abc.abstractmethod
    def kill(self) -> None:
        """End the worker now and release what it holds (idempotent)."""

    def output_tail(self) -> str:
        """The last lines the worker wrote to stdout/stderr, for error messages."""
        return ""


class SubprocessWorker(WorkerProcess):
    """A worker running as a local child process; its output is echoed to the host's stderr.

    Backends that start a local command (venv, conda, apptainer) use it as is.
    """

    def __init__(self, argv, env, cwd, tail_lines=20, echo=True):
        self.argv = list(argv)
        self._tail = collections.deque(maxlen=tail_lines)
        self._echo = echo
        self.process = subprocess.Popen(
            self.argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._pump, name="nbcore-worker-output", daemon=True)
        self._reader.start()

    def _pump(self):
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            self._tail.append(line.rstrip("\n"))
            if self._echo:
                sys.stderr.write(line)
                sys.stderr.flush()
        self.process.stdout.close()

    def poll(self):
        return self.process.poll()

    def wait(self, timeout):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=2)

    def output_tail(self):
        self._reader.join(timeout=0.5)
        return "\n".join(self._tail)


class BackendProvider(abc.ABC):
    """A way to create environments and run workers in them (venv, conda, docker, ...).

    Subclasses set :attr:`name` and implement :meth:`check_available`,
    :meth:`install` and :meth:`start_worker`; the rest has working defaults.
    nbcore calls :meth:`install` only when the environment is not ready yet,
    under a cross-process lock, in a fresh empty ``env.path``; it marks the
    environment ready itself once :meth:`install` returns.
    """

    #: The name users select the backend by (``--backend NAME``, ``NBCORE_BACKEND``).
    name: ClassVar[str]
    #: One line shown by ``nbcore backends``.
    description: ClassVar[str] = ""
    #: JSON Schema of this backend's section in an environment spec (``docker: {...}``).
    config_schema: ClassVar[dict] = {"type": "object", "additionalProperties": False, "properties": {}}
    #: False for backends that run in the host process and so isolate nothing.
    isolated: ClassVar[bool] = True

    @abc.abstractmethod
    def check_available(self) -> Optional[str]:
        """Return None when the backend can run here, else a one-line reason with a fix."""

    def check_spec(self, env: Environment) -> Optional[str]:
        """Return None when this backend can provide ``env``'s spec, else the reason (e.g. no such Python)."""
        return None

    def is_installed(self, env: Environment) -> bool:
        """Whether what :meth:`install` built still exists (nbcore checks its ready marker first)."""
        return True

    @abc.abstractmethod
    def install(self, env: Environment, progress) -> None:
        """Create the environment in ``env.path``; report through ``progress`` (:class:`nbcore.Progress`).

        Raise :class:`nbcore.InstallError` naming the failing step when it fails.
        """

    @abc.abstractmethod
    def start_worker(self, env: Environment, launch: WorkerLaunch) -> WorkerProcess:
        """Start ``python -m nbcore.worker`` in the environment as ``launch`` describes; do not wait."""

    def shell(self, env: Environment, command: List[str], launch: WorkerLaunch) -> int:
        """Run ``command`` (an interactive shell when empty) inside the environment; return its exit code."""
        raise NotImplementedError("the %s backend has no shell" % self.name)

    def remove(self, env: Environment) -> None:
        """Delete the environment and anything it owns outside ``env.path`` (images, caches)."""
        shutil.rmtree(env.path, ignore_errors=True)
