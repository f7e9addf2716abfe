"""The plugin API: everything a backend or protocol plugin may import from nbcore, host side.

A plugin's host-side code imports only from here (``from nbcore.plugin import
BackendProvider, hookimpl``) and from :mod:`nbcore.plugin.containers`; its
worker-side code imports only from :mod:`nbcore.worker` (see
:data:`PLUGIN_SURFACE`).  ``tests/test_layout.py`` fails when a first-party
plugin reaches past them.  See ``docs/plugins.md``.

Most names are imported from their modules when first used, so that importing
one part of the API (the registry, on every start) does not import the rest.
"""
from .. import __version__ as nbcore_version
from .. import _lazy_exports
from ..errors import (BackendUnavailable, ConfigError, InstallError, NbcoreError, PluginError, UserError,
                      WorkerError)

#: The rest of the API by module, imported on first use.
_LAZY = {
    "nbcore.home": ("nbcore_home",),
    "nbcore.log": ("log",),
    "nbcore.spec": ("EnvironmentSpec",),
    "nbcore.plugin.auth": ("ANSWER_BYTES", "AuthenticationError", "host_challenge", "host_verify"),
    "nbcore.plugin.backend": ("FEATURES", "BackendProvider", "Command", "Environment", "WorkerLaunch",
                              "host_environment"),
    "nbcore.plugin.capabilities": ("CondaPrefixCapability", "DockerImage", "DockerImageCapability"),
    "nbcore.plugin.environments": ("environment_ready", "install_environment", "list_environments"),
    "nbcore.plugin.process": ("OutputReader", "OutputTail", "SubprocessWorker", "WorkerProcess"),
    "nbcore.plugin.progress": ("Progress",),
    "nbcore.plugin.protocol": ("FALLBACK", "UPGRADE", "ListenAddress", "Listener", "ProtocolProvider",
                               "connect_timeout", "keepalive_seconds", "readable"),
    "nbcore.plugin.registry": ("CapabilityMissing", "FeatureMissing", "Register", "get_registry", "hookimpl"),
    "nbcore.plugin.staging": ("stage_files",),
    "nbcore.private_cache": ("PrivateCache",),
}
_EXPORTS = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "ANSWER_BYTES", "AuthenticationError", "BackendProvider", "BackendUnavailable", "CapabilityMissing", "Command",
    "CondaPrefixCapability", "DockerImage", "DockerImageCapability",
    "ConfigError", "Environment", "EnvironmentSpec", "FALLBACK", "FEATURES", "FeatureMissing", "InstallError", "ListenAddress", "Listener",
    "NbcoreError", "OutputReader", "OutputTail", "PluginError", "PrivateCache", "Progress", "ProtocolProvider", "Register",
    "SubprocessWorker", "UPGRADE", "UserError", "WorkerError", "WorkerLaunch", "WorkerProcess", "get_registry", "log",
    "connect_timeout", "environment_ready", "hookimpl", "host_challenge", "host_environment", "host_verify", "install_environment",
    "keepalive_seconds", "list_environments", "nbcore_home", "nbcore_version", "readable", "stage_files",
]

#: The modules a plugin may import from nbcore: this package and its container toolkit (host side),
#: :mod:`nbcore.worker` (worker side) and :mod:`nbcore.testing` (its tests).
PLUGIN_SURFACE = ("nbcore.plugin", "nbcore.plugin.containers", "nbcore.worker", "nbcore.testing")


__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
