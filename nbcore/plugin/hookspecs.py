"""Every hook an nbcore plugin can implement.

A plugin is a module (or object) whose functions are decorated with
:data:`nbcore.hookimpl` and named after the specs below.  Installed
distributions announce their plugin module with an entry point in the group
``nbcore``; nbcore's own backends and protocols are registered the same way.
"""
import pluggy

hookspec = pluggy.HookspecMarker("nbcore")


@hookspec
def nbcore_register_backends(register):
    """Register the backend providers this plugin offers.

    :param register: call ``register(provider)`` once per
        :class:`nbcore.BackendProvider` instance.  A name that is already taken
        raises :class:`nbcore.PluginError`.

    Called once per process, when the registry is first built; all
    implementations are called (not firstresult).

    .. versionadded:: 0.1
    """


@hookspec
def nbcore_register_protocols(register):
    """Register the protocol providers this plugin offers.

    :param register: call ``register(provider)`` once per
        :class:`nbcore.ProtocolProvider` instance.  A name that is already taken
        raises :class:`nbcore.PluginError`.

    Called once per process, when the registry is first built; all
    implementations are called (not firstresult).

    .. versionadded:: 0.1
    """
