"""nb-ray: an nbcore backend that runs each environment's worker on a node of a Ray cluster."""
__version__ = "0.2.0"
