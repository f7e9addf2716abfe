"""Plugin discovery and the registry of backend and protocol providers.

Plugins are found through entry points in the group ``nbcore`` (entry name =
plugin name, value = the module holding the hook implementations).  nbcore's
own providers are the modules in :data:`DEFAULT_PLUGINS`, registered through the
very same hooks.

``NBCORE_DISABLE_PLUGINS=name,name`` blocks plugins by entry-point name;
``NBCORE_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points altogether.
"""
import dataclasses
import importlib
import logging
import os
from typing import Dict, List, Optional

import pluggy

from ..errors import PluginError

GROUP = "nbcore"
hookimpl = pluggy.HookimplMarker(GROUP)

#: nbcore's built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "nbcore.builtin.venv",
    "nbcore.builtin.python",
    "nbcore.builtin.tcp_pickle",
)

#: Which pip package provides a backend that is not installed (a hint for error messages).
KNOWN_BACKENDS = {
    "conda": "nb-conda",
    "docker": "nb-docker",
    "apptainer": "nb-apptainer",
}
#: Which pip package provides a protocol that is not installed.
KNOWN_PROTOCOLS = {
    "shm-pickle": "nb-shm",
}
KNOWN_PROVIDERS = dict(KNOWN_BACKENDS, **KNOWN_PROTOCOLS)

log = logging.getLogger("nbcore")


@dataclasses.dataclass
class PluginInfo:
    """One registered plugin: where it comes from and what it provides."""

    name: str
    module: str
    distribution: Optional[str]
    version: Optional[str]
    builtin: bool
    hooks: List[str] = dataclasses.field(default_factory=list)
    backends: List[str] = dataclasses.field(default_factory=list)
    protocols: List[str] = dataclasses.field(default_factory=list)


class Registry:
    """The providers of this process, by name, and the plugins they came from."""

    def __init__(self, plugin_manager: pluggy.PluginManager):
        self.plugin_manager = plugin_manager
        self.backends: Dict[str, object] = {}
        self.protocols: Dict[str, object] = {}
        self.plugins: Dict[str, PluginInfo] = {}
        self.provided_by: Dict[str, str] = {}

    def _registrar(self, table, kind, plugin):
        def register(provider):
            name = getattr(provider, "name", None)
            if not name:
                raise PluginError("plugin %r registered a %s provider without a name" % (plugin.name, kind))
            if name in table:
                raise PluginError("plugin %r registers %s %r, already provided by plugin %r"
                                  % (plugin.name, kind, name, self.provided_by[kind + ":" + name]))
            table[name] = provider
            self.provided_by[kind + ":" + name] = plugin.name
            getattr(plugin, kind + "s").append(name)
        return register

    def collect(self):
        """Call every plugin's register hooks, attributing each provider to its plugin."""
        for hook_name, table, kind in (("nbcore_register_backends", self.backends, "backend"),
                                       ("nbcore_register_protocols", self.protocols, "protocol")):
            hook = getattr(self.plugin_manager.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order: built-ins first, so newcomers get the blame
                plugin = self.plugins[impl.plugin_name]
                plugin.hooks.append(hook_name)
                try:
                    impl.function(register=self._registrar(table, kind, plugin))
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError("plugin %r failed in %s: %s" % (plugin.name, hook_name, exc)) from exc

    def plugin_of(self, kind: str, name: str) -> PluginInfo:
        return self.plugins[self.provided_by[kind + ":" + name]]


def _disabled():
    return {n.strip() for n in os.environ.get("NBCORE_DISABLE_PLUGINS", "").split(",") if n.strip()}


def build_registry(plugins=(), autoload: Optional[bool] = None) -> Registry:
    """Build a registry from the built-in plugins, entry points and ``plugins`` (extra module objects)."""
    from .. import __version__
    from . import hookspecs

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    infos = {}
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        infos[module_name] = PluginInfo(module_name, module_name, "nbcore", __version__, True)
    for name in _disabled():
        pm.set_blocked(name)
    if autoload is None:
        autoload = not os.environ.get("NBCORE_DISABLE_PLUGIN_AUTOLOAD")
    if autoload:
        try:
            pm.load_setuptools_entrypoints(GROUP)
        except Exception as exc:
            raise PluginError("an installed nbcore plugin failed to load: %s: %s "
                              "(NBCORE_DISABLE_PLUGINS=name skips it)" % (type(exc).__name__, exc)) from exc
        for plugin, dist in pm.list_plugin_distinfo():
            name = pm.get_name(plugin)
            infos[name] = PluginInfo(name, plugin.__name__, dist.project_name, dist.version, False)
    for plugin in plugins:
        name = getattr(plugin, "__name__", repr(plugin))
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc
        infos[name] = PluginInfo(name, name, None, None, False)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc)) from exc
    registry = Registry(pm)
    registry.plugins = infos
    registry.collect()
    return registry


_registry: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry


def missing_hint(name: str) -> str:
    """A hint for a provider that is not installed: which package provides it."""
    package = KNOWN_PROVIDERS.get(name)
    return " (pip install %s provides it)" % package if package else ""
