"""The conda fallback: a spec with a ``conda:`` section runs on a generic base image with a conda prefix.

That happens when the spec's ``apptainer.image`` cannot be had (or when it names
none), as the seed's Apptainer backend does.  nb-conda's ``conda-prefix``
capability builds the prefix: the conda packages are linked on the host into the
environment's folder, every later step (recording the activation, pip, the
install script) runs inside the base image with the prefix bound at the same
path.  Workers run the prefix's Python with its recorded activation.
"""
from pathlib import Path
from typing import Dict

from nbcore.plugin import CondaPrefixCapability, get_registry
from nbcore.plugin.containers import DEFAULT_PATH

#: The conda prefix inside an environment's folder.
PREFIX = "conda-prefix"
#: The file in an environment's folder that says its image could not be had and conda was used instead.
MARKER = "conda-fallback"
#: The environment an activation starts from inside the container (nothing of the host's).
CONTAINER_BASE = {"PATH": DEFAULT_PATH}


def wanted(spec) -> bool:
    """Whether the spec says how to build it with conda (a ``conda:`` section)."""
    return "conda" in spec.sections


def in_use(env, image_named: bool) -> bool:
    """Whether ``env`` runs on conda: its spec names no image, or its image could not be had."""
    return wanted(env.spec) and (not image_named or (env.path / MARKER).exists())


def mark(env, reason: str) -> None:
    """Record that ``env``'s image could not be had (``reason``), so it runs on conda from now on."""
    (env.path / MARKER).write_text(reason + "\n")


def prefix_of(env) -> Path:
    return env.path / PREFIX


def builder() -> CondaPrefixCapability:
    """nb-conda's prefix builder (:class:`nbcore.plugin.CapabilityMissing` naming nb-conda when it is absent)."""
    return get_registry().capability("conda-prefix")


def build(env, progress, run) -> None:
    """Build the prefix for ``env``'s spec; ``run(argv, variables, cwd, step)`` runs a step inside the container."""
    builder().build(env.spec, prefix_of(env), progress, run=run, base=CONTAINER_BASE)


def is_built(env) -> bool:
    return builder().is_built(prefix_of(env))


def activation(env) -> Dict[str, str]:
    """The complete environment of a process in the prefix, inside the container."""
    return builder().activation(prefix_of(env), base=CONTAINER_BASE)
