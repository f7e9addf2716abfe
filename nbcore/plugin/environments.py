"""The environment store from plugin code: for launchers that build and list environments on another machine."""
from typing import List

from ..home import nbcore_home
from ..spec import EnvironmentSpec
from .backend import BackendProvider, Environment
from .store import ensure_installed, is_ready, list_environments as list_store, make_environment


def install_environment(provider: BackendProvider, name: str, spec: EnvironmentSpec, progress,
                        install: bool = True) -> Environment:
    """The environment ``provider`` builds of ``spec`` under this machine's ``NBCORE_HOME``, installed unless ready.

    It is what opening an environment does before the worker starts: the same
    folder, hash, install lock and ready marker, so concurrent calls build once.
    ``install=False`` only names the environment.
    """
    env = make_environment(nbcore_home(), provider, name, spec)
    if install:
        ensure_installed(provider, env, progress)
    return env


def list_environments(sizes: bool = True) -> List[dict]:
    """Every environment under this machine's ``NBCORE_HOME``, as ``nbcore envs --all --json`` lists them
    (``ready`` False for unfinished ones; ``bytes`` None without ``sizes``)."""
    return list_store(nbcore_home(), sizes)


def environment_ready(provider: BackendProvider, env: Environment) -> bool:
    """Whether ``env`` is built and ready (its ready marker is there and ``provider.is_installed`` agrees), for
    launchers that build environments elsewhere (on a cluster node sharing ``NBCORE_HOME``) and check from here."""
    return is_ready(env, warn=False) and provider.is_installed(env)
