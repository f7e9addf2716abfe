"""Plugin discovery and the registry of what plugins provide: backends, protocols, capabilities.

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
import re
from pathlib import Path
from typing import Dict, List, Optional

import pluggy

from ..errors import PluginError, UserError
from .backend import FEATURES, BackendProvider
from .capabilities import INTERFACES
from .catalog import FIRST_PARTY, KnownPlugin
from .protocol import FALLBACK, UPGRADE, ProtocolProvider

GROUP = "nbcore"
hookimpl = pluggy.HookimplMarker(GROUP)

#: nbcore's built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "nbcore.builtin.venv",
    "nbcore.builtin.python",
    "nbcore.builtin.tcp_pickle",
)

#: What a backend, protocol or capability name may look like.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]*$")

log = logging.getLogger("nbcore")


class CapabilityMissing(UserError):
    """A plugin asked for a capability that no installed plugin offers."""


class FeatureMissing(UserError):
    """A command needs a feature the chosen backend does not have (:data:`nbcore.plugin.FEATURES`)."""


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
    capabilities: List[str] = dataclasses.field(default_factory=list)


class Register:
    """What a plugin's ``nbcore_register`` hook receives: one method per kind of thing it can offer.

    Each method checks what it is given and raises :class:`nbcore.PluginError`
    naming the plugin when the type or the name is wrong or the name is taken.
    """

    def __init__(self, registry: "Registry", plugin: PluginInfo):
        self._registry = registry
        self._plugin = plugin

    def backend(self, provider: BackendProvider) -> None:
        """Offer a backend (``--backend NAME``); it must be able to run a command or start a worker."""
        self._add("backend", provider, BackendProvider)
        if not {"command", "start_worker"} & provider.features:
            self._fail("registered the backend %r, which can neither run a command nor start a worker (implement "
                       "command() and worker_python(), or start_worker())" % provider.name)

    def protocol(self, provider: ProtocolProvider) -> None:
        """Offer a protocol (a name in ``NBCORE_PROTOCOL`` lists)."""
        self._add("protocol", provider, ProtocolProvider)
        problem = provider.role_problem()
        if problem:
            self._fail("protocol %r %s" % (provider.name, problem))

    def capability(self, name: str, implementation: object) -> None:
        """Offer ``implementation`` to other plugins under ``name`` (see :meth:`Registry.capability`); for a name
        in :data:`nbcore.plugin.capabilities.INTERFACES` it must implement that interface."""
        self._check_name("capability", name)
        interface = INTERFACES.get(name)
        if interface is not None and not isinstance(implementation, interface):
            self._fail("offers the capability %r with a %s, which is not a nbcore.plugin.%s"
                       % (name, type(implementation).__name__, interface.__name__))
        self._claim("capability", name, implementation)

    def hint(self, name: str, command: str) -> None:
        """Say how to install the provider or capability ``name`` when it is absent (e.g. a companion
        plugin's ``pip install ...``); nbcore's messages about ``name`` then show ``command``."""
        self._check_name("hint", name)
        if not isinstance(command, str) or not command.strip() or "\n" in command:
            self._fail("declared the hint %r for %r; a hint is one line" % (command, name))
        self._registry.hints[name] = command.strip()

    def _add(self, kind, provider, base):
        if not isinstance(provider, base):
            self._fail("registered a %s that is not a %s (got %s)" % (kind, base.__name__, type(provider).__name__))
        name = getattr(provider, "name", None)
        if not name:
            self._fail("registered a %s provider without a name" % kind)
        self._check_name(kind, name)
        self._claim(kind, name, provider)

    def _check_name(self, kind, name):
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            self._fail("registered the %s name %r; names are lower case letters, digits, '-', '_' and '.'"
                       % (kind, name))

    def _claim(self, kind, name, value):
        table = self._registry.table(kind)
        if name in table:
            self._fail("registers %s %r, already provided by plugin %r"
                       % (kind, name, self._registry.plugin_of(kind, name).name))
        table[name] = value
        self._registry.provided_by[kind + ":" + name] = self._plugin.name
        getattr(self._plugin, _PLURALS[kind]).append(name)

    def _fail(self, message):
        raise PluginError("plugin %r %s" % (self._plugin.name, message), plugin=self._plugin.name)


_PLURALS = {"backend": "backends", "protocol": "protocols", "capability": "capabilities"}

#: The 0.1 hooks, each a ``register(provider)`` callable for one kind.
_LEGACY_HOOKS = {"nbcore_register_backends": "backend", "nbcore_register_protocols": "protocol"}


class Registry:
    """The backends, protocols and capabilities of this process, by name, and the plugins they came from."""

    def __init__(self, plugin_manager: pluggy.PluginManager):
        self.plugin_manager = plugin_manager
        self.backends: Dict[str, BackendProvider] = {}
        self.protocols: Dict[str, ProtocolProvider] = {}
        self.capabilities: Dict[str, object] = {}
        self.plugins: Dict[str, PluginInfo] = {}
        self.provided_by: Dict[str, str] = {}
        #: Plugins whose entry point failed to load: name -> the one-line problem (the others still work).
        self.broken: Dict[str, str] = {}
        #: Install commands plugins declared for names they do not provide (:meth:`Register.hint`).
        self.hints: Dict[str, str] = {}

    def table(self, kind: str) -> dict:
        """The name -> provider table of ``kind`` (``backend``, ``protocol`` or ``capability``)."""
        return {"backend": self.backends, "protocol": self.protocols, "capability": self.capabilities}[kind]

    def collect(self):
        """Call every plugin's register hooks, attributing each provider to its plugin."""
        for hook_name in ("nbcore_register",) + tuple(_LEGACY_HOOKS):
            hook = getattr(self.plugin_manager.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order: built-ins first, so newcomers get the blame
                plugin = self.plugins[impl.plugin_name]
                plugin.hooks.append(hook_name)
                register = Register(self, plugin)
                if hook_name in _LEGACY_HOOKS:
                    register = getattr(register, _LEGACY_HOOKS[hook_name])
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError("plugin %r failed in %s: %s" % (plugin.name, hook_name, exc),
                                      plugin=plugin.name) from exc

    def plugin_of(self, kind: str, name: str) -> PluginInfo:
        """The plugin that registered ``kind`` ``name``."""
        return self.plugins[self.provided_by[kind + ":" + name]]

    def capability(self, name: str):
        """The implementation some plugin offers as ``name``; raise :class:`CapabilityMissing` naming the package."""
        try:
            return self.capabilities[name]
        except KeyError:
            hint = self.hint(name)
            raise CapabilityMissing("this needs %r, which no installed plugin offers (%s)"
                                    % (name, hint + " provides it" if hint else "no known plugin provides it")) from None

    def with_feature(self, feature: str) -> List[str]:
        """The names of the registered backends that have ``feature`` (one of :data:`FEATURES`), sorted."""
        if feature not in FEATURES:
            raise ValueError("unknown backend feature %r (known: %s)" % (feature, ", ".join(FEATURES)))
        return sorted(name for name, provider in self.backends.items() if feature in provider.features)

    def require(self, provider: BackendProvider, feature: str) -> None:
        """Raise :class:`FeatureMissing` (one line: the backend, the feature, the backends that have it) unless
        ``provider`` has ``feature``."""
        if feature in provider.features:
            return
        others = self.with_feature(feature)
        raise FeatureMissing("the %s backend cannot %s; backends that can: %s"
                             % (provider.name, FEATURES[feature], ", ".join(others) or "none installed"))

    def hint(self, name: str) -> Optional[str]:
        """How to install the backend, protocol or capability ``name`` (``pip install ...``), or None when
        no plugin is known to provide it.  A first-party plugin is named by its folder when nbcore runs
        from a source checkout that has it, else by its distribution."""
        if name in self.hints:
            return self.hints[name]
        known = _known(name)
        return _install_command(known) if known else None

    def absent(self, kind: str) -> List[str]:
        """The ``kind`` names (``backend``, ``protocol``, ``capability``) that nbcore's own plugins provide and
        that are not registered here; :meth:`hint` says how to install each."""
        table, field = self.table(kind), _PLURALS[kind]
        return sorted(n for plugin in FIRST_PARTY for n in getattr(plugin, field) if n not in table)

    def auto_backends(self) -> List[BackendProvider]:
        """Backends tried by automatic selection, highest :attr:`~BackendProvider.auto_priority` first."""
        chosen = [b for b in self.backends.values() if b.auto_priority is not None]
        return sorted(chosen, key=lambda b: (-b.auto_priority, b.name))

    def fallback_protocols(self) -> List[ProtocolProvider]:
        """Protocols that can make the first connection, most preferred first."""
        return _by_preference(p for p in self.protocols.values() if FALLBACK in p.roles)

    def upgrade_protocols(self) -> List[ProtocolProvider]:
        """Protocols that can replace an established connection, most preferred first."""
        return _by_preference(p for p in self.protocols.values() if UPGRADE in p.roles)


def _by_preference(protocols):
    return sorted(protocols, key=lambda p: (-p.preference, p.name))


def _entry_points():
    """``(entry point, distribution)`` for every entry point in the group ``nbcore``, each name once."""
    import importlib.metadata

    seen = set()
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group == GROUP and entry_point.name not in seen:
                seen.add(entry_point.name)
                yield entry_point, dist


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
    broken = {}
    if autoload:
        for entry_point, dist in _entry_points():
            if pm.get_plugin(entry_point.name) is not None or pm.is_blocked(entry_point.name):
                continue
            distribution = dist.metadata["Name"]
            try:
                plugin = entry_point.load()
                pm.register(plugin, name=entry_point.name)
            except Exception as exc:  # one broken plugin must not take the others down
                problem = "plugin %r (%s %s) failed to load: %s: %s" % (
                    entry_point.name, distribution, dist.version, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                log.warning("%s; the other plugins work (NBCORE_DISABLE_PLUGINS=%s skips it)", problem, entry_point.name)
                broken[entry_point.name] = problem
                continue
            infos[entry_point.name] = PluginInfo(entry_point.name, getattr(plugin, "__name__", entry_point.value),
                                                 distribution, dist.version, False)
    for plugin in plugins:
        name = getattr(plugin, "__name__", repr(plugin))
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc), plugin=name) from exc
        infos[name] = PluginInfo(name, name, None, None, False)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc), plugin=pm.get_name(exc.plugin)) from exc
    registry = Registry(pm)
    registry.plugins = infos
    registry.broken = broken
    registry.collect()
    return registry


_registry: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry


def _known(name: str) -> Optional[KnownPlugin]:
    return next((p for p in FIRST_PARTY if name in p.backends + p.protocols + p.capabilities), None)


def _install_command(plugin: KnownPlugin) -> str:
    """``pip install ./plugins/nb-x`` from a source checkout that has the plugin, ``pip install nb-x`` elsewhere."""
    folder = Path(__file__).resolve().parents[2] / plugin.folder
    if not (folder / "pyproject.toml").is_file():
        return "pip install %s" % plugin.distribution
    relative = os.path.relpath(folder)
    return "pip install %s" % (folder if relative.startswith("..") else "./" + relative)


def known_backend_names() -> List[str]:
    """The backends nbcore's own plugins provide, installed or not (a spec may have a section of each)."""
    return sorted(n for plugin in FIRST_PARTY for n in plugin.backends)


def missing_hint(name: str, registry: Optional[Registry] = None) -> str:
    """`` (pip install ... provides it)`` for a provider that is not installed, or ``""`` when none is known."""
    hint = (registry or get_registry()).hint(name)
    return " (%s provides it)" % hint if hint else ""
