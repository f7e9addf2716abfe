"""The ``apptainer`` backend provider."""
import os
import subprocess

from nbcore.plugin import BackendProvider, SubprocessWorker

from . import images
from .engine import require_engine, unavailable_reason
from .execution import exec_command
from .settings import CONFIG_SCHEMA, ApptainerSettings

#: What ``nbcore shell`` runs when no command is given.
DEFAULT_SHELL = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"]


class ApptainerBackend(BackendProvider):
    """Runs workers in Apptainer (or SingularityCE) containers: a SIF file or sandbox per spec, converted from
    Docker or other sources once, or built from a generated definition file."""

    name = "apptainer"
    description = ("Apptainer/SingularityCE container per spec (docker://, docker-daemon://, docker-archive://, "
                   ".sif, sandbox; SIF built from the spec); no daemon or root needed")
    config_schema = CONFIG_SCHEMA
    auto_priority = 20

    def check_available(self):
        return unavailable_reason()

    @staticmethod
    def _plan(env):
        settings = ApptainerSettings.from_spec(env.spec)
        return settings, images.plan_image(env, settings)

    def identity(self, spec):
        """The image's URI, and the size and modification time of a local file or folder it names."""
        return {"image": images.image_source(ApptainerSettings.from_spec(spec), spec).fingerprint()}

    def is_installed(self, env):
        return os.path.exists(self._plan(env)[1].image)

    def install(self, env, progress):
        engine = require_engine()
        _, plan = self._plan(env)
        images.ensure_local(engine, plan, progress)
        if plan.built:
            images.build(engine, plan, progress)

    def worker_python(self, env):
        return self._plan(env)[1].python

    def _exec(self, env, argv, variables, cwd, worker_path=None):
        settings, plan = self._plan(env)
        return exec_command(require_engine(), settings, plan.image, list(argv), dict(variables or {}), cwd, env.path,
                            worker_path, is_sif=plan.is_sif)

    def command(self, env, argv, variables=None, cwd=None):
        """``apptainer exec`` of ``argv`` in the environment's image, set up as the worker's."""
        return self._exec(env, argv, variables, cwd)

    def start_worker(self, env, launch):
        command = self._exec(env, [self.worker_python(env)] + launch.python_args, launch.worker_variables(),
                             launch.cwd, launch.worker_path)
        return SubprocessWorker(command.argv, env=command.env, cwd=command.cwd)

    def shell(self, env, command, launch):
        run = self._exec(env, command or DEFAULT_SHELL, {}, launch.cwd, launch.worker_path)
        return subprocess.call(run.argv, env=run.env, cwd=run.cwd)
