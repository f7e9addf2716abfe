"""Errors nbcore raises; :class:`UserError` ones print as a single line in the CLI."""


class NbcoreError(Exception):
    """Base class of nbcore's errors."""


class UserError(NbcoreError):
    """Something the user can fix (bad config, unknown backend, missing engine); the message says how."""


class ConfigError(UserError):
    """The configuration file is missing, malformed or invalid."""


class BackendUnavailable(UserError):
    """The chosen backend cannot run here or cannot provide the environment."""


class PluginError(NbcoreError):
    """A plugin misbehaved: duplicate names, a broken entry point, a hook without a spec.

    :attr:`plugin` names the plugin (its entry point or module name) when one is to blame, else None.
    """

    def __init__(self, message, plugin=None):
        super().__init__(message)
        self.plugin = plugin


class WorkerError(NbcoreError):
    """The worker died, never connected, or broke the protocol."""


class InstallError(UserError):
    """Creating an environment failed; the message names the failing step."""


class RemoteError(NbcoreError):
    """An exception raised in the worker whose class does not exist on the host."""

    def __init__(self, type_name, message):
        super().__init__("%s: %s" % (type_name, message))
        self.type_name = type_name


class RemoteTraceback(Exception):
    """Carries the worker's traceback text; set as ``__cause__`` of re-raised exceptions."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return "\n\nTraceback in the worker:\n" + self.text


class ResultError(NbcoreError):
    """A result of the worker that the host cannot rebuild; the message names its type and the fixes."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM.

    A :class:`KeyboardInterrupt`, so every path that handles Ctrl-C (killing an
    install step's process group, removing a half-built environment, releasing
    the install lock) handles it too.
    """
