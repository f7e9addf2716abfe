"""The plugin API: everything a backend or protocol plugin may import from nbcore, host side.

A plugin's host-side code imports only from here (``from nbcore.plugin import
BackendProvider, hookimpl``) and from :mod:`nbcore.plugin.containers`; its
worker-side code imports only from :mod:`nbcore.worker` (see
:data:`PLUGIN_SURFACE`).  ``tests/test_layout.py`` fails when a first-party
plugin reaches past them.  See ``docs/plugins.md``.
"""
from .. import __version__ as nbcore_version
from ..errors import (BackendUnavailable, ConfigError, InstallError, NbcoreError, PluginError, UserError,
                      WorkerError)
from ..home import nbcore_home
from ..spec import EnvironmentSpec
from .auth import ANSWER_BYTES, AuthenticationError, host_challenge, host_verify
from .backend import FEATURES, BackendProvider, Command, Environment, WorkerLaunch, host_environment
from .capabilities import CondaPrefixCapability, DockerImage, DockerImageCapability
from .environments import environment_ready, install_environment, list_environments
from .process import OutputReader, OutputTail, SubprocessWorker, WorkerProcess
from .progress import Progress
from .protocol import (FALLBACK, UPGRADE, ListenAddress, Listener, ProtocolProvider, connect_timeout,
                       keepalive_seconds, readable)
from .registry import CapabilityMissing, FeatureMissing, Register, get_registry, hookimpl
from .staging import stage_files

__all__ = [
    "ANSWER_BYTES", "AuthenticationError", "BackendProvider", "BackendUnavailable", "CapabilityMissing", "Command",
    "CondaPrefixCapability", "DockerImage", "DockerImageCapability",
    "ConfigError", "Environment", "EnvironmentSpec", "FALLBACK", "FEATURES", "FeatureMissing", "InstallError", "ListenAddress", "Listener",
    "NbcoreError", "OutputReader", "OutputTail", "PluginError", "Progress", "ProtocolProvider", "Register",
    "SubprocessWorker", "UPGRADE", "UserError", "WorkerError", "WorkerLaunch", "WorkerProcess", "get_registry",
    "connect_timeout", "environment_ready", "hookimpl", "host_challenge", "host_environment", "host_verify", "install_environment",
    "keepalive_seconds", "list_environments", "nbcore_home", "nbcore_version", "readable", "stage_files",
]

#: The modules a plugin may import from nbcore: this package and its container toolkit (host side),
#: :mod:`nbcore.worker` (worker side) and :mod:`nbcore.testing` (its tests).
PLUGIN_SURFACE = ("nbcore.plugin", "nbcore.plugin.containers", "nbcore.worker", "nbcore.testing")
