"""The ``docker-image`` capability: the Docker image nb-docker runs for an environment, for other engines.

nb-apptainer asks it which image to convert (``docker://NAME``) before building
one of its own.  The answer is a ready ``docker.image`` when the spec builds
nothing, else the published name ``nbcore push`` pushes to
(:func:`nb_docker.plan.published_name`), or nothing when no registry is
configured or ``NBCORE_REGISTRY_PULL=never``.  No docker-py and no daemon: names, and the
published image's manifest digest asked of its registry (:meth:`DockerImages.digest`), so the
other engine fetches ``REPOSITORY@DIGEST`` resolved once and checks the image-hash label
(:data:`LABEL_IMAGE_HASH`) of what it got against :attr:`DockerImage.image_hash`.
"""
import os
from pathlib import Path
from typing import Optional

from nbcore.plugin import DockerImage, DockerImageCapability, Environment
from nbcore.plugin.containers import pull_policy

from .plan import configured_registry, plan_image, published_name
from .settings import DockerSettings

#: The label holding a built image's :attr:`DockerImage.image_hash` (as :data:`nb_docker.images.LABEL_IMAGE_HASH`).
LABEL_IMAGE_HASH = "org.nbcore.image-hash"


class DockerImages(DockerImageCapability):
    """Answers which Docker image nb-docker would run for an environment that another engine can fetch."""

    def image_for(self, name: str, spec) -> Optional[DockerImage]:
        """The image for environment ``name`` of ``spec``, or None (a build with no registry, or the pull policy
        ``never``).  Raise :class:`nbcore.plugin.UserError` when ``NBCORE_REGISTRY_PULL`` is not a policy."""
        env, settings, plan = _plan(name, spec)
        if not plan.built:
            return DockerImage(plan.tag, plan.python, published=False)
        registry = _registry(env, settings)
        if registry is None:
            return None
        return DockerImage(published_name(registry, env, plan), plan.python, True, plan.image_hash)

    def digest(self, name: str, credentials=None, plain_http: bool = False) -> Optional[str]:
        """The manifest digest of image ``name`` in its registry (``sha256:...``), None when the registry does not
        have it; ``credentials`` (user, password) for a registry that asks for a login, plain http when
        ``plain_http`` (and for loopback registries).  Raise :class:`nbcore.plugin.InstallError` with the
        registry's words (``UNAUTHORIZED``, ``connection refused``...) when it cannot tell."""
        from .registry_api import manifest_digest

        return manifest_digest(name, credentials, plain_http)

    def fingerprint(self, spec) -> Optional[dict]:
        """What decides :meth:`image_for`'s answer for ``spec`` besides the environment's name (JSON-serialisable;
        None when it answers None): for another engine's environment hash."""
        env, settings, plan = _plan("", spec)
        if not plan.built:
            return {"image": plan.tag, "python": plan.python}
        registry = _registry(env, settings)
        if registry is None:
            return None
        return {"registry": registry, "image_hash": plan.image_hash, "python": plan.python}


def _plan(name, spec):
    """nb-docker's view of environment ``name`` of ``spec``: its settings and :class:`~nb_docker.plan.ImagePlan`."""
    env = Environment(name, spec, "docker", spec.identity("docker"), Path(os.devnull))
    settings = DockerSettings.from_spec(spec)
    return env, settings, plan_image(env, settings)


def _registry(env, settings) -> Optional[str]:
    return None if pull_policy() == "never" else configured_registry(env, settings)
