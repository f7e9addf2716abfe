"""nbcore: run Python code in isolated environments and call it from the host as if it were local.

Public API::

    from nbcore import open_backend
    with open_backend("demo", config="nbcore.yaml") as env:
        Model = env.remote("mymethod.model:Model")

Plugin authors use :data:`hookimpl`, :class:`BackendProvider`,
:class:`ProtocolProvider` and friends (see ``docs/plugins.md``).  Names are
imported lazily so that ``import nbcore`` stays cheap.
"""
__version__ = "0.2.0"

_EXPORTS = {
    "open_backend": "nbcore.host.launch",
    "RemoteEnv": "nbcore.host.launch",
    "RemoteObject": "nbcore.host.connection",
    "hookimpl": "nbcore.plugin.registry",
    "get_registry": "nbcore.plugin.registry",
    "BackendProvider": "nbcore.plugin.backend",
    "Environment": "nbcore.plugin.backend",
    "WorkerLaunch": "nbcore.plugin.backend",
    "WorkerProcess": "nbcore.plugin.process",
    "SubprocessWorker": "nbcore.plugin.process",
    "ProtocolProvider": "nbcore.plugin.protocol",
    "Listener": "nbcore.plugin.protocol",
    "Channel": "nbcore.worker.channel",
    "EnvironmentSpec": "nbcore.spec",
    "Progress": "nbcore.plugin.progress",
    "NbcoreError": "nbcore.errors",
    "UserError": "nbcore.errors",
    "ConfigError": "nbcore.errors",
    "BackendUnavailable": "nbcore.errors",
    "PluginError": "nbcore.errors",
    "WorkerError": "nbcore.errors",
    "InstallError": "nbcore.errors",
    "RemoteError": "nbcore.errors",
    "ResultError": "nbcore.errors",
    "RemoteTraceback": "nbcore.errors",
}

__all__ = ["__version__"] + sorted(_EXPORTS)


def _lazy_exports(namespace, exports):
    """A module's ``__getattr__`` and ``__dir__`` that import each name of ``exports`` (name -> module) on first
    use and keep it in ``namespace`` (the module's globals)."""

    def __getattr__(name):
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError("module %r has no attribute %r" % (namespace["__name__"], name))
        import importlib

        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy_exports(globals(), _EXPORTS)
