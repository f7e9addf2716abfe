"""Which image an environment runs: a ready image, or a build named by its content, and its published name.

No docker-py here: other engines ask for these names (the ``docker-image``
capability) on every start, and importing docker-py costs tenths of a second.
"""
import dataclasses
import hashlib
import re
from typing import Optional

from nbcore.plugin import containers
from nbcore.plugin.containers import ENV_PYTHON, BuildRecipe, python_environment_recipe

from .dockerfile import render_dockerfile
from .settings import BASE_IMAGE_VARIABLE, BUILD_KEYS, DockerSettings, base_image

#: Repository of built images: ``nbcore/<env name>:<content hash>``.
REPOSITORY = "nbcore"


@dataclasses.dataclass(frozen=True)
class ImagePlan:
    """The image an environment runs and, when it is built, how."""

    tag: str
    python: str
    recipe: Optional[BuildRecipe] = None
    dockerfile: Optional[str] = None
    #: :func:`image_hash` of a built image.
    image_hash: Optional[str] = None

    @property
    def built(self) -> bool:
        return self.recipe is not None


def repository_for(env_name: str) -> str:
    """A valid repository name for an environment name (lower case, runs of other characters as ``-``)."""
    return "%s/%s" % (REPOSITORY, re.sub(r"[^a-z0-9]+", "-", env_name.lower()).strip("-") or "env")


def plan_image(env, settings: DockerSettings) -> ImagePlan:
    """A ready ``image`` when the spec builds nothing, else a generated build tagged by content hash."""
    spec = env.spec
    if settings.image and not (settings.build_script or spec.packages or spec.install_script):
        return ImagePlan(tag=settings.image, python=settings.python_executable)
    recipe = python_environment_recipe(spec, settings.image or base_image(spec.python), settings.python_executable,
                                       settings.ca_bundle, settings.build_script,
                                       base_hint=" (docker.image, or %s)" % BASE_IMAGE_VARIABLE)
    recipe.build_variables.update(settings.build_args)
    dockerfile = render_dockerfile(recipe)
    digest = hashlib.sha256((env.spec_hash + "\0" + dockerfile).encode()).hexdigest()[:16]
    return ImagePlan(tag="%s:%s" % (repository_for(env.name), digest), python=ENV_PYTHON, recipe=recipe,
                     dockerfile=dockerfile, image_hash=image_hash(spec, dockerfile))


def image_hash(spec, dockerfile: str) -> str:
    """The hash of what a built image holds: the spec without its project folder and run-only settings, and the
    Dockerfile.  Unlike the environment's hash it is the same on every machine, so it names published images."""
    section = {key: value for key, value in spec.section("docker").items() if key in BUILD_KEYS}
    portable = dataclasses.replace(spec, sections={"docker": section}, base_dir=None, source="", registry=None)
    return hashlib.sha256((portable.identity("docker") + "\0" + dockerfile).encode()).hexdigest()


def published_name(registry: str, env, plan: ImagePlan) -> str:
    """``REGISTRY/nbcore/<env>:<image hash>``: where ``nbcore push`` publishes a built image, and installs look."""
    return "%s/%s:%s" % (registry.rstrip("/"), repository_for(env.name), plan.image_hash[:16])


def configured_registry(env, settings: DockerSettings) -> Optional[str]:
    """``NBCORE_REGISTRY``, else the spec's ``docker.registry``, else the config's top-level ``registry``."""
    return containers.configured_registry(env.spec, settings.registry)
