"""The plugin API: everything a backend or protocol plugin may import from nbcore, host side.

A plugin's host-side code imports only from here (``from nbcore.plugin import
BackendProvider, hookimpl``); its worker-side code imports only from
:mod:`nbcore.worker`.  ``tests/test_layout.py`` fails when a first-party plugin
reaches past these two surfaces.  See ``docs/plugins.md``.
"""
from ..errors import (BackendUnavailable, ConfigError, InstallError, NbcoreError, PluginError, UserError,
                      WorkerError)
from ..home import nbcore_home
from ..spec import EnvironmentSpec
from .backend import BackendProvider, Environment, SubprocessWorker, WorkerLaunch, WorkerProcess
from .progress import Progress
from .protocol import Listener, ProtocolProvider
from .registry import get_registry, hookimpl

__all__ = [
    "BackendProvider", "BackendUnavailable", "ConfigError", "Environment", "EnvironmentSpec", "InstallError",
    "Listener", "NbcoreError", "PluginError", "Progress", "ProtocolProvider", "SubprocessWorker", "UserError",
    "WorkerError", "WorkerLaunch", "WorkerProcess", "get_registry", "hookimpl", "nbcore_home",
]
