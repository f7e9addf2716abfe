"""nb-slurm: an nbcore backend that runs each environment's worker as a job step on a Slurm node."""
__version__ = "0.2.0"
