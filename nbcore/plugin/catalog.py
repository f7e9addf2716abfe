"""The plugins nbcore's own project ships, by what they provide (data only).

Only the registry reads this table: it answers which known providers are
absent and how to install them (:meth:`nbcore.plugin.registry.Registry.hint`).
No other module of the core names a plugin.
"""
from typing import NamedTuple, Tuple


class KnownPlugin(NamedTuple):
    """A first-party plugin: its distribution, its folder in a source checkout, and what it registers."""

    distribution: str
    folder: str
    backends: Tuple[str, ...] = ()
    protocols: Tuple[str, ...] = ()
    capabilities: Tuple[str, ...] = ()


FIRST_PARTY = (
    KnownPlugin("nb-conda", "plugins/nb-conda", backends=("conda",), capabilities=("conda-prefix",)),
    KnownPlugin("nb-docker", "plugins/nb-docker", backends=("docker",), capabilities=("docker-image",)),
    KnownPlugin("nb-apptainer", "plugins/nb-apptainer", backends=("apptainer",)),
    KnownPlugin("nb-ray", "plugins/nb-ray", backends=("ray",)),
    KnownPlugin("nb-slurm", "plugins/nb-slurm", backends=("slurm",)),
    KnownPlugin("nb-shm", "plugins/nb-shm", protocols=("shm-pickle",)),
)
