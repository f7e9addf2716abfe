"""nb-docker: the ``docker`` backend for nbcore (workers run in Docker containers)."""
__version__ = "0.2.0"
