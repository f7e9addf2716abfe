"""The interfaces of the capabilities nbcore's own plugins offer one another.

A plugin offers a capability with ``register.capability(name, implementation)``
and another asks for it with ``get_registry().capability(name)``, so neither
imports the other.  For the names in :data:`INTERFACES` registration checks that
the implementation is an instance of the interface; the caller can rely on its
methods.  A third-party plugin may offer its own implementation of one of them.
"""
import abc
import dataclasses
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class DockerImage:
    """A Docker image another engine can fetch to run an environment (what :class:`DockerImageCapability` answers)."""

    #: ``REGISTRY/nbcore/<env>:<image hash>``, or the spec's ready ``docker.image``.
    name: str
    #: The interpreter inside the image that runs the worker.
    python: str
    #: True for the published image of a build (in the configured registry), False for a ready image.
    published: bool
    #: What a published image's ``org.nbcore.image-hash`` label must say (None for a ready image).
    image_hash: Optional[str] = None


class DockerImageCapability(abc.ABC):
    """``docker-image``: which Docker image runs an environment, for engines that can run Docker images."""

    @abc.abstractmethod
    def image_for(self, name: str, spec) -> Optional[DockerImage]:
        """The image for environment ``name`` of ``spec`` (an :class:`nbcore.plugin.EnvironmentSpec`), or None
        when there is none to fetch."""

    @abc.abstractmethod
    def digest(self, name: str, credentials=None, plain_http: bool = False) -> Optional[str]:
        """The manifest digest (``sha256:...``) of image ``name`` in its registry, None when the registry does not
        have it; ``credentials`` is ``(user, password)`` for a registry that asks for a login."""

    @abc.abstractmethod
    def fingerprint(self, spec) -> Optional[dict]:
        """What decides :meth:`image_for`'s answer for ``spec`` (JSON-serialisable), for another engine's hash."""


#: ``run(argv, variables, cwd, step)``: runs one install step where the prefix lives (a container, say).
StepRunner = Callable[[list, Mapping[str, str], Optional[str], str], None]


class CondaPrefixCapability(abc.ABC):
    """``conda-prefix``: builds a conda prefix from a spec and says how to activate it."""

    @abc.abstractmethod
    def build(self, spec, prefix: Path, progress, run: Optional[StepRunner] = None,
              base: Optional[Mapping[str, str]] = None, variables: Optional[Mapping[str, str]] = None) -> None:
        """Create ``prefix`` (which must not exist yet) for ``spec``, reporting to ``progress``; ``run`` executes
        the steps after linking (default: on this machine), starting from the environment ``base``."""

    @abc.abstractmethod
    def activation(self, prefix: Path, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The complete environment of a process running inside ``prefix``: ``base`` activated."""

    @abc.abstractmethod
    def is_built(self, prefix: Path) -> bool:
        """Whether :meth:`build` completed for ``prefix``."""


#: The capability names whose implementations registration checks, and the interface each must implement.
INTERFACES = {
    "docker-image": DockerImageCapability,
    "conda-prefix": CondaPrefixCapability,
}
