"""nbcore's logger, the ``logging`` logger named ``nbcore``, without importing ``logging`` at every start.

Importing :mod:`logging` costs a start about 4 ms (it brings :mod:`traceback`
and more), and an open that goes well only logs at INFO level. Until something
in the process has imported :mod:`logging`, no handler or level can have been
set, so INFO and DEBUG records would go nowhere: :data:`log` drops them
without the import. WARNING and above always reach :mod:`logging` (imported
then), which prints them on stderr when nothing else was configured.
"""
import sys

NAME = "nbcore"


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
        """The real logger (imports :mod:`logging`)."""
        import logging

        return logging.getLogger(NAME)


#: The ``nbcore`` logger: ``log.info(...)``, ``log.warning(...)``, like a :class:`logging.Logger`.
log = Logger()
