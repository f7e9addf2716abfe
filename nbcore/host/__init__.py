"""The host runtime: configuration, backend and protocol selection, the environment store, and the
connection to a running worker.  Users reach it through :func:`nbcore.open_backend`."""
