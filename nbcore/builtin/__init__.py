"""nbcore's own plugins (``venv``, ``python``, ``tcp-pickle``), registered through the same hooks as any other."""
