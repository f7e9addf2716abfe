"""nbcore's logger, the ``logging`` logger named ``nbcore``, without importing ``logging`` at every start.

Importing :mod:`logging` costs a start about 4 ms (it brings :mod:`traceback`
and more), and an open that goes well only logs at INFO level. Until something
in the process has imported :mod:`logging`, no handler or level can have been
set, so INFO and DEBUG records would go nowhere: :data:`log` drops them
without the import. WARNING and above always reach :mod:`logging` (imported
then), which prints them on stderr when nothing else was configured.
A program that sets the output up itself can leave the import to the first
record too: :func:`configure`.
"""
import sys

NAME = "nbcore"
#: ``logging.WARNING`` (its value, without the import).
WARNING = 30
#: The ``logging.basicConfig`` arguments :func:`configure` left for the first record to apply.
_deferred = None


def configure(level, **basic_config):
    """``logging.basicConfig(level=level, **basic_config)``: at once when ``level`` lets INFO or DEBUG records
    through or ``logging`` is already imported, else when :data:`log` first passes a record on (nothing below
    ``level`` is dropped that would have been shown)."""
    global _deferred
    _deferred = dict(basic_config, level=level)
    if level < WARNING or "logging" in sys.modules:
        Logger.logger()


class Logger:
    """Stands for ``logging.getLogger("nbcore")``; see the module's docstring."""

    __slots__ = ()

    def debug(self, message, *args, **kwargs):
        if "logging" in sys.modules:
            self.logger().debug(message, *args, stacklevel=2, **kwargs)

    def info(self, message, *args, **kwargs):
        if "logging" in sys.modules:
            self.logger().info(message, *args, stacklevel=2, **kwargs)

    def warning(self, message, *args, **kwargs):
        self.logger().warning(message, *args, stacklevel=2, **kwargs)

    def error(self, message, *args, **kwargs):
        self.logger().error(message, *args, stacklevel=2, **kwargs)

    @staticmethod
    def logger():
        """The real logger (imports :mod:`logging`, then applies what :func:`configure` left)."""
        global _deferred
        import logging

        if _deferred is not None:
            logging.basicConfig(**_deferred)
            _deferred = None
        return logging.getLogger(NAME)


#: The ``nbcore`` logger: ``log.info(...)``, ``log.warning(...)``, like a :class:`logging.Logger`.
log = Logger()
