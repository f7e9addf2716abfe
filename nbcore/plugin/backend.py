"""What a backend plugin provides: the :class:`BackendProvider` and its worker handles."""
import abc
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, ClassVar, Dict, FrozenSet, List, Optional, Tuple

from ..errors import UserError
from ..spec import EnvironmentSpec
from .process import SubprocessWorker, WorkerProcess


@dataclasses.dataclass(frozen=True)
class Environment:
    """One environment as a backend sees it: a named spec and the folder reserved for it.

    nbcore makes one per open or install and hands the same object to every hook of that
    open, so what a backend derives from it once (:meth:`BackendProvider.plan`) is kept here.
    """

    name: str
    spec: EnvironmentSpec
    backend: str
    spec_hash: str
    path: Path
    _plan: object = dataclasses.field(default=None, init=False, repr=False, compare=False)


@dataclasses.dataclass
class Command:
    """A process to run inside an environment: what :meth:`BackendProvider.command` returns.

    ``env`` is the complete environment of the process (not additions to the
    host's); ``cwd`` None leaves the working directory to the backend's default.
    """

    argv: List[str]
    env: Dict[str, str]
    cwd: Optional[str] = None


#: Host variables a worker or command never inherits: they would point it at the host's own Python.
HOST_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def host_environment(variables: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The host's environment without :data:`HOST_PYTHON_VARIABLES`, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in HOST_PYTHON_VARIABLES}
    env.update(variables or {})
    return env


@dataclasses.dataclass
class WorkerLaunch:
    """Everything a backend needs to start a worker for the host.

    The backend runs the environment's Python with :attr:`python_args` (the worker's
    :func:`~nbcore.worker.serve.main`) inside the environment with :attr:`worker_path`
    on ``PYTHONPATH`` (mount it at the same path in containers), the variables of
    :meth:`worker_variables` set, and :attr:`cwd` as the working directory (None: the
    backend's default).
    """

    worker_path: Path
    cwd: Optional[Path]
    variables: Dict[str, str]
    #: ``-c`` rather than ``-m nbcore.worker`` (which works too): ``-m`` imports runpy on every start.
    python_args: List[str] = dataclasses.field(
        default_factory=lambda: ["-c", "from nbcore.worker.serve import main; main()"])
    #: The same worker code as one content-addressed archive, for launchers that ship it to another machine:
    #: a callable returning ``(tar bytes, sha256 hex)``; equal code gives equal bytes (and an equal hash).
    worker_archive: Optional[Callable[[], Tuple[bytes, str]]] = None

    def worker_variables(self) -> Dict[str, str]:
        """The variables nbcore sets for the worker: :attr:`variables`, ``PYTHONPATH`` and unbuffered output."""
        return dict(self.variables, PYTHONPATH=str(self.worker_path), PYTHONUNBUFFERED="1")

    def worker_environment(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """Deprecated since 0.2 (removed in 0.3): use ``host_environment(launch.worker_variables())``.

        ``base`` (default ``os.environ``) without :data:`HOST_PYTHON_VARIABLES`, plus
        :meth:`worker_variables`.
        """
        warnings.warn("WorkerLaunch.worker_environment() is deprecated since nbcore 0.2 and goes in 0.3; "
                      "use nbcore.plugin.host_environment(launch.worker_variables())",
                      DeprecationWarning, stacklevel=2)
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in HOST_PYTHON_VARIABLES}
        env.update(self.worker_variables())
        return env


#: What a backend may be able to do beyond installing, each with the words messages use for it.  A backend's
#: :attr:`~BackendProvider.features` are derived from the methods its class implements.
FEATURES = {
    "command": "run commands inside its environments",
    "start_worker": "start workers",
    "shell": "open a shell inside its environments (nbcore shell)",
    "lock": "write lock files (nbcore lock)",
    "publish": "publish images (nbcore push)",
    "list_environments": "list its environments itself (nbcore envs --backend)",
}


class BackendProvider(abc.ABC):
    """A way to create environments and run commands and workers in them (venv, conda, docker, ...).

    Subclasses set :attr:`name` and implement :meth:`check_available`,
    :meth:`install`, and either :meth:`command` with :meth:`worker_python`
    (from which the worker start and ``nbcore shell`` follow) or
    :meth:`start_worker` itself; the rest has working defaults.  What a
    backend can do is derived from what it implements (:attr:`features`).
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
    #: Whether automatic selection tries this backend, and how early: higher first; None = only when asked
    #: for (``--backend``, ``NBCORE_BACKEND``, the config, the spec's ``backends:`` or its only section).
    auto_priority: ClassVar[Optional[int]] = None
    #: Whether a spec that has this backend's section runs on this backend unless the user names another
    #: (``--backend``, ``NBCORE_BACKEND``, the config's ``backend:``, the spec's ``backends:``): when it is
    #: unavailable, opening the environment is an error instead of a quiet move to another backend.
    #: For backends that decide where the code runs (a cluster), not only how it is isolated.
    required_by_section: ClassVar[bool] = False
    #: Whether a spec's ``python:`` may be a range (``">=3.9,<3.11"``) on this backend; a backend that
    #: leaves it False is told only versions (``"3.10"``, ``"3.10.13"``) and a range is a one-line error.
    accepts_python_ranges: ClassVar[bool] = False
    #: The keys of its own that :meth:`list_environments` adds to each record, shown as the first columns of
    #: ``nbcore envs --backend NAME`` (e.g. the node an environment is on).
    environment_columns: ClassVar[Tuple[str, ...]] = ()

    @property
    def features(self) -> FrozenSet[str]:
        """The :data:`FEATURES` this backend has, derived from the methods its class overrides: ``command``
        (:meth:`command`), ``start_worker`` (:meth:`start_worker`, or :meth:`command` with
        :meth:`worker_python`), ``shell`` (:meth:`shell`, :meth:`shell_command` or :meth:`command`),
        ``lock``, ``publish`` and ``list_environments`` (the methods of those names)."""
        return _features(type(self))

    def prepare(self, env: Environment) -> object:
        """What this backend derives from ``env`` before doing anything with it (settings, image names, the
        interpreter inside): its plan, computed once per open or install.  Hooks read it with :meth:`plan`.
        Default: None."""
        return None

    def plan(self, env: Environment) -> object:
        """:meth:`prepare`'s answer for ``env``, computed on first use and kept with ``env`` (one open)."""
        if env._plan is None:
            object.__setattr__(env, "_plan", self.prepare(env))  # Environment is frozen; the plan is a cache
        return env._plan

    @abc.abstractmethod
    def check_available(self) -> Optional[str]:
        """Return None when the backend can run here, else a one-line reason with a fix."""

    def check_spec(self, env: Environment) -> Optional[str]:
        """Return None when this backend can provide ``env``'s spec, else the reason (e.g. no such Python)."""
        return None

    def identity(self, spec: EnvironmentSpec) -> dict:
        """What else decides what gets built for ``spec``, beyond the spec's text (e.g. the content of a lock
        file it names, a base image digest): JSON-serialisable, added to the environment's hash."""
        return {}

    def is_installed(self, env: Environment) -> bool:
        """Whether what :meth:`install` built still exists (nbcore checks its ready marker first)."""
        return True

    @abc.abstractmethod
    def install(self, env: Environment, progress) -> None:
        """Create the environment in ``env.path``; report through ``progress`` (:class:`nbcore.Progress`).

        Raise :class:`nbcore.InstallError` naming the failing step when it fails.
        """

    def command(self, env: Environment, argv: List[str], variables: Optional[Dict[str, str]] = None,
                cwd: Optional[Path] = None) -> Command:
        """The process that runs ``argv`` inside ``env`` with ``variables`` set, in ``cwd`` (None: the default).

        Implement it once and the worker start, ``nbcore shell`` and install
        steps that run inside the environment all follow from it.
        """
        raise NotImplementedError("the %s backend cannot run commands inside its environments; use one that can "
                                  "(e.g. --backend venv)" % self.name)

    def worker_python(self, env: Environment) -> str:
        """The Python interpreter inside ``env`` that runs the worker (a path or name :meth:`command` resolves)."""
        raise NotImplementedError("the %s backend does not name its Python" % self.name)

    def start_worker(self, env: Environment, launch: WorkerLaunch) -> WorkerProcess:
        """Start ``python -m nbcore.worker`` in the environment as ``launch`` describes; do not wait.

        The default runs :meth:`command` of :meth:`worker_python` as a local process.
        """

        command = self.command(env, [self.worker_python(env)] + launch.python_args, launch.worker_variables(),
                               launch.cwd)
        return SubprocessWorker(command.argv, env=command.env, cwd=command.cwd)

    def shell_command(self, env: Environment, argv: List[str], cwd: Optional[Path] = None, terminal: bool = False,
                      variables: Optional[Dict[str, str]] = None) -> Command:
        """The process ``nbcore shell`` runs: ``argv`` (the backend's interactive shell when empty) inside ``env``,
        its standard input passed on, and a terminal inside when ``terminal`` (the caller's input is one).

        Launchers that run the shell on another machine ask the backend there for it.  The default is
        :meth:`command` of ``argv``, else of ``$SHELL`` (``/bin/sh``).
        """
        return self.command(env, argv or [os.environ.get("SHELL") or "/bin/sh"], variables or {}, cwd)

    def shell(self, env: Environment, command: List[str], launch: WorkerLaunch) -> int:
        """Run ``command`` (an interactive shell when empty) inside the environment; return its exit code.

        The default runs :meth:`shell_command` with this process's terminal (or pipes) attached.
        """
        run = self.shell_command(env, command, launch.cwd, terminal=sys.stdin.isatty())
        return subprocess.call(run.argv, env=run.env, cwd=run.cwd)

    def install_script_command(self, env: Environment) -> Command:
        """The spec's ``install_script`` as a :meth:`command`: bash, stopping at the first failure, in the config
        file's folder, with ``NBCORE_ENV_PATH`` set to ``env.path``."""
        return self.command(env, ["bash", "-eo", "pipefail", "-c", env.spec.install_script],
                            {"NBCORE_ENV_PATH": str(env.path)}, Path(env.spec.base_dir or os.getcwd()))

    def lock(self, env: Environment, path: Path, progress) -> None:
        """Write a lock file of the installed ``env`` to ``path`` (``nbcore lock``), for backends that have them."""
        raise NotImplementedError("the %s backend writes no lock files" % self.name)

    def caches(self) -> Dict[str, Path]:
        """Folders this backend shares between its environments (package caches), by label, for ``nbcore doctor``."""
        return {}

    def publish(self, env: Environment, registry: Optional[str], progress, skip_existing: bool = False) -> dict:
        """Push the installed ``env``'s image to ``registry`` (None: the configured one) for ``nbcore push``.

        Return ``{"name", "image", "digest", "skipped"}``; ``skip_existing`` leaves an image the
        registry already holds alone (``skipped`` true).  Backends without images keep this default.
        """
        raise UserError("the %s backend cannot publish images (nbcore push)" % self.name)

    def list_environments(self) -> Optional[List[dict]]:
        """The environments ``nbcore envs --backend NAME`` lists, for backends that keep them elsewhere than in
        the local store (the nodes of a cluster); None (the default): the local store's environments of this
        backend.  Each record has the keys of ``nbcore envs --json`` (unfinished ones with ``ready`` False),
        plus the keys of :attr:`environment_columns`."""
        return None

    def collect_garbage(self, unreferenced: bool, older_than_days: Optional[float], dry_run: bool) -> List[dict]:
        """What ``nbcore gc`` removes besides environments: what this backend keeps in this machine's
        ``NBCORE_HOME`` outside them (files shipped to a cluster node), by the same options.  Remove it (only
        list it with ``dry_run``) and return a record per item with ``name``, ``backend``, ``reason``, ``bytes``
        and ``path``.  The default keeps nothing there."""
        return []

    def remove(self, env: Environment) -> None:
        """Delete the environment and anything it owns outside ``env.path`` (images, caches)."""
        shutil.rmtree(env.path, ignore_errors=True)


def _overrides(cls, method: str) -> bool:
    return getattr(cls, method) is not getattr(BackendProvider, method)


@functools.lru_cache(maxsize=None)
def _features(cls) -> FrozenSet[str]:
    has = {name for name in ("command", "start_worker", "lock", "publish", "list_environments") if _overrides(cls, name)}
    if "command" in has and _overrides(cls, "worker_python"):
        has.add("start_worker")
    if "command" in has or _overrides(cls, "shell") or _overrides(cls, "shell_command"):
        has.add("shell")
    return frozenset(has)
