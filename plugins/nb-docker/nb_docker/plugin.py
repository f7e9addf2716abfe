"""The nbcore hooks of nb-docker (the module named by the ``nbcore`` entry point)."""
from nbcore.plugin import hookimpl

from .backend import DockerBackend
from .docker_image import DockerImages


@hookimpl
def nbcore_register(register):
    register.backend(DockerBackend())
    register.capability("docker-image", DockerImages())
