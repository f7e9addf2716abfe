"""Every hook an nbcore plugin can implement.

A plugin is a module (or object) whose functions are decorated with
:data:`nbcore.plugin.hookimpl` and named after the specs below.  Installed
distributions announce their plugin module with an entry point in the group
``nbcore``; nbcore's own backends and protocols are registered the same way.
"""
import pluggy

hookspec = pluggy.HookspecMarker("nbcore")


@hookspec
def nbcore_register(register):
    """Register everything this plugin offers: backends, protocols, capabilities.

    :param register: a :class:`nbcore.plugin.Register`; call
        ``register.backend(provider)``, ``register.protocol(provider)`` and
        ``register.capability(name, implementation)``.  A name that is already
        taken, or a provider of the wrong type, raises :class:`nbcore.PluginError`
        naming the plugin.

    Called at most once per process, when something the plugin may provide
    is first asked for (see ``docs/plugins.md``, "When a plugin is imported");
    all implementations are called (not firstresult).

    .. versionadded:: 0.2
    """


@hookspec(warn_on_impl=DeprecationWarning(
    "the hook nbcore_register_backends is deprecated since nbcore 0.2 and goes in 0.3; implement "
    "nbcore_register(register) and call register.backend(provider)"))
def nbcore_register_backends(register):
    """Register backend providers (the 0.1 form of :func:`nbcore_register`).

    :param register: call ``register(provider)`` once per
        :class:`nbcore.plugin.BackendProvider` instance; same checks as
        ``Register.backend``.

    Called once per process, when the registry is first built; all
    implementations are called (not firstresult).

    .. versionadded:: 0.1
    .. deprecated:: 0.2
       Implement :func:`nbcore_register`; this hook goes in 0.3.
    """


@hookspec(warn_on_impl=DeprecationWarning(
    "the hook nbcore_register_protocols is deprecated since nbcore 0.2 and goes in 0.3; implement "
    "nbcore_register(register) and call register.protocol(provider)"))
def nbcore_register_protocols(register):
    """Register protocol providers (the 0.1 form of :func:`nbcore_register`).

    :param register: call ``register(provider)`` once per
        :class:`nbcore.plugin.ProtocolProvider` instance; same checks as
        ``Register.protocol``.

    Called once per process, when the registry is first built; all
    implementations are called (not firstresult).

    .. versionadded:: 0.1
    .. deprecated:: 0.2
       Implement :func:`nbcore_register`; this hook goes in 0.3.
    """
