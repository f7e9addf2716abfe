"""Plugin discovery and the registry of what plugins provide: backends, protocols, capabilities.

Plugins are found through entry points in the group ``nbcore`` (entry name =
plugin name, value = the module holding the hook implementations).  nbcore's
own providers are the modules in :data:`DEFAULT_PLUGINS`, registered through the
very same hooks.

Entry points are read when the registry is built (:mod:`.entry_points`
remembers them between starts), but a plugin is imported (and its hook called)
only when something it may provide is asked for: looking up a
name (``registry.backends["docker"]``, ``registry.capability("conda-prefix")``)
imports the plugins the catalog (:mod:`.catalog`) says provide it, and every
other plugin only if the name is still missing; going through a whole table
(``registry.protocols.values()``, automatic backend selection, ``nbcore
backends``) imports every plugin that may provide that kind.  nbcore's own
plugins provide what the catalog lists; a third-party plugin is imported by
every look-up it may answer.  So ``nbcore call`` with a chosen backend imports
that backend's plugin and the protocol plugins, not every installed plugin.

``NBCORE_DISABLE_PLUGINS=name,name`` blocks plugins by entry-point name;
``NBCORE_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points altogether.
"""
import dataclasses
import importlib
import os
import re
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pluggy

from ..errors import PluginError, UserError
from ..log import log
from .backend import FEATURES, BackendProvider
from .catalog import FIRST_PARTY, KnownPlugin
from .entry_points import GROUP, EntryPoint, entry_points
from .protocol import FALLBACK, UPGRADE, ProtocolProvider

hookimpl = pluggy.HookimplMarker(GROUP)

#: nbcore's built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "nbcore.builtin.venv",
    "nbcore.builtin.python",
    "nbcore.builtin.tcp_pickle",
)

#: What a backend, protocol or capability name may look like.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]*$")


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
        from .capabilities import INTERFACES  # the interfaces' module only where a plugin offers a capability

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
        table = self._registry.table(kind).loaded
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


class ProviderTable(MutableMapping):
    """The name -> provider table of one kind; it imports the plugins that may provide what is asked for
    (see the module's docstring), so reading it is all a caller does."""

    def __init__(self, registry: "Registry", kind: str):
        self._registry = registry
        self._kind = kind
        #: What the plugins imported so far registered.
        self.loaded: Dict[str, object] = {}

    def __getitem__(self, name):
        if name not in self.loaded:
            self._registry.load_providers_of(self._kind, name)
        return self.loaded[name]

    def __contains__(self, name):
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __setitem__(self, name, provider):
        self.loaded[name] = provider

    def __delitem__(self, name):
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        self._registry.load_providers_of(self._kind)
        return iter(self.loaded)

    def __len__(self):
        self._registry.load_providers_of(self._kind)
        return len(self.loaded)

    def __repr__(self):
        return "<%s table: %s>" % (self._kind, ", ".join(sorted(self)))


@dataclasses.dataclass(eq=False)
class _Pending:
    """An entry point read but not imported yet, and what the catalog says its plugin provides (None: unknown)."""

    entry_point: EntryPoint
    known: Optional[KnownPlugin]

    def may_provide(self, kind: str, name: Optional[str] = None) -> bool:
        if self.known is None:
            return True
        names = getattr(self.known, _PLURALS[kind])
        return name in names if name is not None else bool(names)


class Registry:
    """The backends, protocols and capabilities of this process, by name, and the plugins they came from."""

    def __init__(self, plugin_manager: pluggy.PluginManager):
        self.plugin_manager = plugin_manager
        self.backends = ProviderTable(self, "backend")
        self.protocols = ProviderTable(self, "protocol")
        self.capabilities = ProviderTable(self, "capability")
        self._plugins: Dict[str, PluginInfo] = {}
        self.provided_by: Dict[str, str] = {}
        self._broken: Dict[str, str] = {}
        #: Entry points not imported yet, in the order they were found.
        self._pending: List[_Pending] = []
        self._loading = threading.RLock()  # threads may look names up at once; a hook may look one up too
        #: Install commands plugins declared for names they do not provide (:meth:`Register.hint`).
        self.hints: Dict[str, str] = {}

    @property
    def plugins(self) -> Dict[str, PluginInfo]:
        """Every plugin of this process by name (all of them imported)."""
        self.load_all()
        return self._plugins

    @property
    def broken(self) -> Dict[str, str]:
        """Plugins whose entry point failed to load: name -> the one-line problem (the others still work)."""
        self.load_all()
        return self._broken

    def table(self, kind: str) -> ProviderTable:
        """The name -> provider table of ``kind`` (``backend``, ``protocol`` or ``capability``)."""
        return {"backend": self.backends, "protocol": self.protocols, "capability": self.capabilities}[kind]

    def load_all(self) -> None:
        """Import every plugin not imported yet."""
        self._load(list(self._pending))

    def load_providers_of(self, kind: str, name: Optional[str] = None) -> None:
        """Import the plugins that may provide ``kind`` ``name`` (every name of ``kind`` when None): first those
        the catalog names for it, then, while it is still missing, every other one."""
        with self._loading:
            self._load([p for p in self._pending if p.may_provide(kind, name)])
            if name is not None and name not in self.table(kind).loaded:
                self.load_all()

    def _load(self, pending: List[_Pending]) -> None:
        with self._loading:
            loaded = []
            for item in pending:
                if item not in self._pending:  # loaded meanwhile, by a look-up its plugin's import made
                    continue
                self._pending.remove(item)
                info = self._import(item)
                if info is not None:
                    loaded.append(info.name)
            if loaded:
                self.collect(loaded)

    def _import(self, item: _Pending) -> Optional[PluginInfo]:
        """Import one entry point's plugin and register it with pluggy; None (and one warning line) if it fails."""
        entry_point = item.entry_point
        distribution, version = entry_point.distribution, entry_point.version
        try:
            plugin = entry_point.load()
            self.plugin_manager.register(plugin, name=entry_point.name)
        except Exception as exc:  # one broken plugin must not take the others down
            problem = "plugin %r (%s %s) failed to load: %s: %s" % (
                entry_point.name, distribution, version, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            log.warning("%s; the other plugins work (NBCORE_DISABLE_PLUGINS=%s skips it)", problem, entry_point.name)
            self._broken[entry_point.name] = problem
            return None
        _check_pending(self.plugin_manager)
        info = PluginInfo(entry_point.name, getattr(plugin, "__name__", entry_point.value), distribution, version, False)
        self._plugins[info.name] = info
        return info

    def collect(self, names=None):
        """Call the register hooks of the plugins ``names`` (default: all registered), attributing each
        provider to its plugin."""
        for hook_name in ("nbcore_register",) + tuple(_LEGACY_HOOKS):
            hook = getattr(self.plugin_manager.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order: built-ins first, so newcomers get the blame
                if names is not None and impl.plugin_name not in names:
                    continue
                plugin = self._plugins[impl.plugin_name]
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
        return self._plugins[self.provided_by[kind + ":" + name]]

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
        self.load_all()  # any plugin may have declared a hint for it
        if name in self.hints:
            return self.hints[name]
        known = _known(name)
        return _install_command(known) if known else None

    def absent(self, kind: str) -> List[str]:
        """The ``kind`` names (``backend``, ``protocol``, ``capability``) that nbcore's own plugins provide and
        that are not registered here; :meth:`hint` says how to install each."""
        table, field = self.table(kind), _PLURALS[kind]
        names = [n for plugin in FIRST_PARTY for n in getattr(plugin, field)]
        if any(n not in table.loaded for n in names):
            self.load_providers_of(kind)
        return sorted(n for n in names if n not in table.loaded)

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


def _disabled():
    return {n.strip() for n in os.environ.get("NBCORE_DISABLE_PLUGINS", "").split(",") if n.strip()}


def build_registry(plugins=(), autoload: Optional[bool] = None) -> Registry:
    """Build a registry from the built-in plugins, entry points (imported when needed, see the module's
    docstring) and ``plugins`` (extra module objects)."""
    from .. import __version__
    from . import hookspecs

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        registry._plugins[module_name] = PluginInfo(module_name, module_name, "nbcore", __version__, True)
    for name in _disabled():
        pm.set_blocked(name)
    if autoload is None:
        autoload = not os.environ.get("NBCORE_DISABLE_PLUGIN_AUTOLOAD")
    if autoload:
        registry._pending = [_Pending(entry_point, _catalog_entry(entry_point.name))
                             for entry_point in entry_points()
                             if pm.get_plugin(entry_point.name) is None and not pm.is_blocked(entry_point.name)]
    for plugin in plugins:
        name = getattr(plugin, "__name__", repr(plugin))
        try:
            pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc), plugin=name) from exc
        registry._plugins[name] = PluginInfo(name, name, None, None, False)
    _check_pending(pm)
    registry.collect()
    return registry


def _check_pending(pm):
    """Reject a hook implementation that matches no spec, naming its plugin."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(str(exc), plugin=pm.get_name(exc.plugin)) from exc


def _catalog_entry(entry_point_name: str) -> Optional[KnownPlugin]:
    """The catalog's record of a first-party plugin, whose entry point is named after its distribution."""
    return next((p for p in FIRST_PARTY if p.distribution == entry_point_name), None)


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
