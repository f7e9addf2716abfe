"""Opening an environment: pick the backend, install if needed, start and connect its worker."""
import atexit
import os
import weakref
from pathlib import Path
from typing import Optional, Union

from ..log import log
from .. import settings
from ..worker import serve
from .connection import Connection
from .config import Config, config_from_dict, find_config_file, load_config
from ..errors import BackendUnavailable, ConfigError, WorkerError
from ..home import nbcore_home
from ..plugin.registry import get_registry
from ..plugin.progress import Progress
from .selection import KEPT_BUILD, choose_backend, plan_protocols, protocol_list
from .staging import stage_worker, worker_archive
from ..plugin.store import InUse, ensure_installed, is_ready, make_environment
from ..plugin.backend import WorkerLaunch
from ..plugin.protocol import ListenAddress, connect_timeout, keepalive_seconds
from ..worker.framing import ConnectionClosed, ProtocolError
from ..worker.versions import TOO_OLD_EXIT
from ..worker.versions import describe as describe_versions
from .negotiation import host_negotiate

_open = weakref.WeakSet()


class RemoteEnv:
    """An open environment with a running worker; use it as a context manager.

    ``remote("module:qualname")`` gives a proxy of an object in the worker;
    calling a remote class constructs a remote instance.  ``call`` runs a
    function and returns its result.
    """

    def __init__(self, name, environment, provider, connection, worker_python):
        self.name = name
        self.environment = environment
        self.provider = provider
        self.connection = connection
        #: The worker's Python version, e.g. ``"3.11.7"``.
        self.worker_python = worker_python
        #: The hold that keeps ``nbcore gc`` and rebuilds off the environment while it is open.
        self.in_use = None

    @property
    def backend(self) -> str:
        """The backend's name, e.g. ``venv``."""
        return self.provider.name

    @property
    def protocol(self) -> str:
        """The negotiated protocol, e.g. ``tcp-pickle5-buffers``."""
        return self.connection.protocol

    def remote(self, path: str):
        """A proxy for the object at ``module:qualname`` in the worker (it stays there)."""
        return self.connection.request("import", path)

    def call(self, path: str, *args, **kwargs):
        """Call the function at ``module:qualname`` in the worker and return its result."""
        return self.connection.request("call", path, args, kwargs)

    def allocate_ndarray(self, shape, dtype):
        """An array to fill and pass as an argument; with ``shm-pickle`` it crosses without a copy."""
        from ..worker.allocation import allocate_ndarray

        return allocate_ndarray(shape, dtype, channel=self.connection.channel)

    def close(self):
        """Shut the worker down; safe to call twice."""
        try:
            self.connection.close()
        finally:
            if self.in_use is not None:
                self.in_use.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<RemoteEnv %s on %s via %s>" % (self.name, self.backend, self.protocol)


def resolve_config(config: Union[None, str, os.PathLike, dict, Config], registry) -> Config:
    if isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return config_from_dict(config, registry.backends)
    path = find_config_file(config)
    if path is None:
        raise ConfigError("no configuration: pass -c FILE, set NBCORE_CONFIG, or create ./nbcore.yaml")
    return load_config(path, registry.backends)


def prepare(name, config=None, backend=None, progress=None, install=True, feature=None, announce=None,
            prefer_built=True, announce_news_only=False):
    """Resolve config, backend and environment; install it when needed.  Return ``(config, provider, env)``.

    ``feature`` (a :data:`~nbcore.plugin.backend.FEATURES` name): the command needs it; a backend without it
    is a one-line error before anything is built.  ``announce(line)``, when given, receives one line saying
    which backend was chosen and why (with ``announce_news_only``, only when the environment is about to be
    built or a ready build was kept over the first choice); ``prefer_built=False`` chooses as if nothing were
    built yet (``nbcore install --rebuild``).
    """
    settings.check()
    registry = get_registry()
    config = resolve_config(config, registry)
    spec = config.spec(name)
    home = nbcore_home()
    provider, how = choose_backend(registry, lambda b: make_environment(home, b, name, spec), spec,
                                   requested=backend, config_default=config.backend,
                                   is_built=lambda b: is_ready(make_environment(home, b, name, spec), warn=False),
                                   prefer_built=prefer_built)
    log.info("backend %s (%s)", provider.name, how)
    if feature:
        registry.require(provider, feature)
    env = make_environment(home, provider, name, spec)
    if announce is not None and not (announce_news_only and KEPT_BUILD not in how and is_ready(env, warn=False)):
        announce("environment %s: backend %s (%s)" % (name, provider.name, how))
    if install:
        ensure_installed(provider, env, progress or Progress())
    return config, provider, env


def _worker_modules():
    return [p.worker_module for p in get_registry().protocols.values()]


def staged_worker_path():
    """The folder with the worker code of nbcore and every installed protocol plugin."""
    return stage_worker(nbcore_home(), _worker_modules())


def worker_launch(address, secret, fallback, candidates, spec=None):
    """What the backend needs to start the worker; ``spec``'s ``cwd:`` and ``pythonpath:`` apply when given."""
    protocols = [fallback] + [p for _, p in candidates]
    variables = {
        serve.ADDRESS_VARIABLE: address,
        serve.SECRET_VARIABLE: secret.hex(),
        serve.PROTOCOLS_VARIABLE: ",".join("%s=%s" % (p.name, p.worker_module) for p in protocols),
        serve.KEEPALIVE_VARIABLE: str(keepalive_seconds()),
    }
    cwd = Path.cwd()
    if spec is not None and spec.cwd:
        cwd = Path(spec.cwd)
        if not cwd.is_dir():
            raise ConfigError("%s: cwd: %s is not a folder; make it or fix the path (relative to the config "
                              "file's folder)" % (spec.source or "the spec", cwd))
    if spec is not None and spec.pythonpath:
        variables[serve.PATHS_VARIABLE] = os.pathsep.join(spec.pythonpath)
    return WorkerLaunch(worker_path=staged_worker_path(), cwd=cwd, variables=variables,
                        worker_archive=lambda: worker_archive(_worker_modules()))


def start(config, provider, env, protocol: Optional[str] = None) -> RemoteEnv:
    """Start a worker for an installed environment and connect to it.

    The environment counts as in use (:class:`~nbcore.plugin.store.InUse`) until the result is closed.
    """
    in_use = InUse(env.path)
    try:
        remote_env = _start_and_connect(config, provider, env, protocol)
    except BaseException:
        in_use.release()
        raise
    remote_env.in_use = in_use
    return remote_env


def _start_and_connect(config, provider, env, protocol):
    registry = get_registry()
    names = protocol_list(registry, config.protocol, protocol)
    fallback, candidates = plan_protocols(registry, names)
    listener = fallback.listen(ListenAddress.from_environment())
    secret = os.urandom(32)
    try:
        launch = worker_launch(listener.address, secret, fallback, candidates, env.spec)
    except BaseException:
        listener.close()
        raise
    try:
        process = provider.start_worker(env, launch)
    except BaseException:
        listener.close()
        raise
    try:
        try:
            main, control = listener.accept(secret, connect_timeout(), process.poll)
        finally:
            listener.close()
        try:
            channel, hello = host_negotiate(main, candidates, lambda line: log.info("protocol %s", line))
        except BaseException:
            main.close()
            control.close()
            raise
    except (WorkerError, ConnectionClosed, ProtocolError, OSError) as exc:
        code = process.wait(1.0)
        process.kill()
        tail = process.output_tail().strip()
        if code == TOO_OLD_EXIT and tail:
            raise BackendUnavailable("%s: %s" % (env.name, tail.splitlines()[-1])) from None
        if isinstance(exc, WorkerError):
            message = str(exc)
        elif code is not None:
            message = "the worker exited with code %s while connecting" % code
        else:
            message = "the worker broke off while connecting (%s)" % exc
        raise WorkerError(message + ("; its last output:\n" + tail if tail else "")) from None
    except BaseException:
        process.kill()
        raise
    control.keepalive(keepalive_seconds())
    connection = Connection(channel, control, process)
    log.info("connected to the worker (%s) via %s", describe_versions(channel.peer), connection.protocol)
    remote_env = RemoteEnv(env.name, env, provider, connection, hello["python"])
    _open.add(remote_env)
    return remote_env


def open_backend(name: str, config=None, backend: Optional[str] = None, protocol: Optional[str] = None,
                 progress: Optional[Progress] = None) -> RemoteEnv:
    """Open environment ``name``: install it if needed, start its worker, connect.

    :param config: path of the YAML file, a dict with the same schema, or None
        (``NBCORE_CONFIG``, then ``./nbcore.yaml``).
    :param backend: force a backend (else ``NBCORE_BACKEND``, config, automatic).
    :param protocol: protocol list (else ``NBCORE_PROTOCOL``, config, default).
    :param progress: where install progress goes (default: stderr).
    """
    config, provider, env = prepare(name, config, backend, progress)
    return start(config, provider, env, protocol)


@atexit.register
def _close_all():
    for remote_env in list(_open):
        try:
            remote_env.close()
        except Exception:
            pass

