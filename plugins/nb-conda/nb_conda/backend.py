"""The ``conda`` backend provider: one conda prefix per spec, its worker running activated."""
from pathlib import Path
from typing import Optional

from nbcore.plugin import BackendProvider, Command, ConfigError

from .prefix import CondaPrefixBuilder
from .settings import CONFIG_SCHEMA, identity_material, package_cache, repodata_cache


class CondaBackend(BackendProvider):
    """Conda environments per spec, created by the embedded py-rattler engine or by micromamba/mamba/conda."""

    name = "conda"
    config_schema = CONFIG_SCHEMA
    #: Chosen first among the built-in backends: real C/C++ isolation without a container engine.
    auto_priority = 40

    def __init__(self, builder: Optional[CondaPrefixBuilder] = None):
        self.builder = builder or CondaPrefixBuilder()

    @property
    def description(self):
        try:
            engine = self.builder.engine().description
        except ConfigError as exc:
            engine = "no engine (%s)" % exc
        return "conda environment per spec, activated; engine: %s" % engine

    def check_available(self):
        try:
            self.builder.engine()
        except ConfigError as exc:
            return str(exc)
        return None

    def identity(self, env_spec) -> dict:
        """The content of ``environment_file`` and ``lock_file`` and the default Python: a change makes a new env."""
        return identity_material(env_spec)

    @staticmethod
    def prefix(env) -> Path:
        return env.path / "prefix"

    def is_installed(self, env):
        return self.builder.is_built(self.prefix(env))

    def install(self, env, progress):
        self.builder.build(env.spec, self.prefix(env), progress, variables={"NBCORE_ENV_PATH": str(env.path)})

    def lock(self, env, path, progress):
        """Write the environment's conda packages to the lock file ``path`` (``lock_file:`` installs it with no solve)."""
        count = self.builder.lock(env.spec, self.prefix(env), path, progress)
        progress.step("wrote %d packages of %s to %s" % (count, env.name, path))

    def caches(self):
        """The package cache shared by every environment and the embedded engine's repodata cache."""
        return {"conda packages": package_cache(), "conda repodata": repodata_cache()}

    def worker_python(self, env) -> str:
        return str(self.prefix(env) / "bin" / "python")

    def command(self, env, argv, variables=None, cwd=None) -> Command:
        """``argv`` inside the activated environment (the activation recorded at install, replayed: no shell)."""
        environment = self.builder.activation(self.prefix(env))
        environment.update(variables or {})
        return Command(list(argv), environment, None if cwd is None else str(cwd))
