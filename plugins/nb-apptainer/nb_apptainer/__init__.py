"""nb-apptainer: the ``apptainer`` backend for nbcore (workers run in Apptainer or SingularityCE containers)."""
__version__ = "0.2.0"
