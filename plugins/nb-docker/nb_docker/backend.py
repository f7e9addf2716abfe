"""The ``docker`` backend provider.

docker-py is imported only when the backend is used: every ``nbcore`` command
builds the registry, and importing docker-py costs about 0.2 s.
"""
import os
import shutil

from nbcore.plugin import BackendProvider, BackendUnavailable, Command, log, nbcore_home

from .settings import BASE_IMAGE_VARIABLE, CONFIG_SCHEMA, DockerSettings, base_image

#: What ``nbcore shell`` runs when no command is given.
DEFAULT_SHELL = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"]


class DockerBackend(BackendProvider):
    """Runs workers in Docker containers: one image per spec, built from a generated Dockerfile or given ready."""

    name = "docker"
    description = "Docker container per spec (image built from the spec or given ready); needs a Docker daemon"
    config_schema = CONFIG_SCHEMA
    auto_priority = 30

    def check_available(self):
        from .engine import unavailable_reason

        return unavailable_reason()

    def prepare(self, env):
        """``(settings, image plan)`` of ``env``: derived once per open, read by every hook through :meth:`plan`."""
        from .plan import plan_image

        settings = DockerSettings.from_spec(env.spec)
        return settings, plan_image(env, settings)

    def identity(self, spec):
        """The base image ``NBCORE_DOCKER_BASE_IMAGE`` names for a spec without ``docker.image``: another base
        builds another environment (the default base adds nothing, so its environments keep their hash)."""
        if os.environ.get(BASE_IMAGE_VARIABLE) and spec.section(self.name).get("image") is None:
            return {"base_image": base_image(spec.python)}
        return {}

    def is_installed(self, env):
        from .engine import api_client
        from .images import image_exists
        from .publishing import is_the_pulled_image

        _, plan = self.plan(env)
        api = api_client()
        return image_exists(api, plan.tag) and is_the_pulled_image(api, env, plan)

    def install(self, env, progress):
        """Pull the environment's published image when a registry has it, else build it; a ready image is pulled
        when missing."""
        from . import images
        from .engine import api_client
        from .publishing import fetch

        settings, plan = self.plan(env)
        api = api_client()
        if plan.built:
            if not fetch(api, env, plan, settings, progress):
                images.build(api, env, plan, settings, progress)
            images.remove_old_tags(api, env, plan.tag, progress)
        else:
            images.ensure_present(api, plan.tag, progress, "image")

    def publish(self, env, registry, progress, skip_existing=False):
        from .engine import api_client
        from .publishing import publish

        settings, plan = self.plan(env)
        return publish(api_client(), env, plan, settings, registry, progress, skip_existing)

    def worker_python(self, env):
        return self.plan(env)[1].python

    def _container(self, env, argv, variables, cwd, role, worker_path=None):
        from .container import container_config

        settings, plan = self.plan(env)
        return container_config(env, settings, plan.tag, list(argv), dict(variables or {}), cwd, nbcore_home(), role,
                                worker_path)

    def start_worker(self, env, launch):
        from .engine import api_client
        from .running import ContainerWorker

        config = self._container(env, [self.worker_python(env)] + launch.python_args, launch.worker_variables(),
                                 launch.cwd, "worker", launch.worker_path)
        return ContainerWorker(api_client(), config)

    def command(self, env, argv, variables=None, cwd=None):
        """``docker run`` of ``argv`` in the environment's container (the docker CLI; values of variables stay
        out of argv)."""
        return self._cli_command(env, argv, variables, cwd, "command", interactive=False)

    def _cli_command(self, env, argv, variables, cwd, role, interactive):
        docker_cli = shutil.which("docker")
        if docker_cli is None:
            raise BackendUnavailable("running commands in docker environments needs the docker command-line client "
                                     "on PATH (e.g. apt-get install docker.io)")
        config = self._container(env, argv, variables, cwd, role)
        return Command(config.cli_argv(docker_cli, interactive), dict(os.environ, **config.environment))

    def shell_command(self, env, argv, cwd=None, terminal=False, variables=None):
        """``docker run -i`` (with ``-t`` for a terminal) of ``argv``, else of bash (sh when the image has none)."""
        return self._cli_command(env, argv or DEFAULT_SHELL, variables, cwd, "shell", interactive=terminal)

    def remove(self, env):
        """Delete the images this cache and project built for the environment (its name and spec hash), then its
        folder; images another home or project built, or pulled ones, may serve environments elsewhere and stay."""
        import docker.errors

        from .engine import api_client
        from .images import remove_labelled

        try:
            remove_labelled(api_client(), env)
        except docker.errors.DockerException as exc:
            log.warning("could not remove the docker images of %s: %s", env.name, exc)
        super().remove(env)
