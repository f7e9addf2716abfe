"""The ``apptainer`` backend provider."""
import os

from nbcore.plugin import BackendProvider, InstallError, SubprocessWorker, UserError
from nbcore.plugin.containers import PULL_VARIABLE, Mount, pull_policy

from . import conda_fallback, docker_image, images, sif_record
from .engine import require_engine, unavailable_reason
from .execution import exec_command
from .plan import EnvironmentPlan
from .settings import CONFIG_SCHEMA, ApptainerSettings, image_cache, layer_cache

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

    def prepare(self, env):
        """``env``'s :class:`~nb_apptainer.plan.EnvironmentPlan` (settings and the image it runs): derived once per
        open, read by every hook through :meth:`plan`."""
        return EnvironmentPlan.of(env)

    def identity(self, spec):
        """The image's URI, and the size and modification time of a local file or folder it names; for a spec
        that names no image, what names nb-docker's image for it (registry and image hash, or its ready image);
        for a spec with a conda section, that section and the same of the fallback image."""
        settings = ApptainerSettings.from_spec(spec)
        material = {"image": images.image_source(settings, spec).fingerprint()}
        docker = docker_image.fingerprint(spec) if settings.image is None else None
        if docker is not None:
            material["docker_image"] = docker
        if conda_fallback.wanted(spec):
            material["conda"] = spec.section("conda")
            material["fallback"] = images.parse_source(settings.fallback_image, spec.base_dir).fingerprint()
        return material

    def caches(self):
        """The converted images shared by every environment, and Apptainer's own layer cache."""
        return {"apptainer images": image_cache(), "apptainer layers": layer_cache()}

    def is_installed(self, env):
        runs = self.plan(env).runs
        return os.path.exists(runs.image) and (runs.conda_prefix is None or conda_fallback.is_built(env))

    def install(self, env, progress):
        """Run the published or ``docker.image`` image when there is one, else make the spec's image (converted,
        built, or the conda fallback's); record the sha256 of the SIF it runs (:mod:`nb_apptainer.sif_record`)."""
        engine = require_engine()
        plan = self.plan(env)
        plan.rederive(env)  # the folder is new: an earlier install's choice no longer applies
        if plan.settings.image is None and self._run_docker_image(engine, env, plan, progress):
            runs = plan.runs
        else:
            runs = self._make_image(engine, env, plan, progress)
        if runs.is_sif:
            sif_record.record(env.path / sif_record.ENVIRONMENT_RECORD, runs.image)

    def _make_image(self, engine, env, plan, progress):
        """Make the image the spec names (the conda fallback's when it cannot be had); return what ``env`` runs."""
        runs = plan.runs
        if runs.conda_prefix is None:
            try:
                images.ensure_local(engine, runs, progress)
            except InstallError as exc:
                if not conda_fallback.wanted(env.spec):
                    raise
                progress.step("%s; building the environment with conda on %s instead"
                              % (exc, plan.settings.fallback_image))
                conda_fallback.mark(env, str(exc))
                runs = plan.rederive(env)
        if runs.conda_prefix is not None:
            images.ensure_local(engine, runs, progress)
            conda_fallback.build(env, progress, self._step_runner(env, engine, plan.settings, runs, progress))
        elif runs.built:
            images.build(engine, runs, progress)
        return runs

    def _run_docker_image(self, engine, env, plan, progress):
        """Convert the Docker image nb-docker names for ``env`` and record that ``env`` runs it (in its folder and
        in ``plan``); False when the environment is to be made without it (``plan.runs``: how), which a registry
        that lacks the image means, and, with ``NBCORE_REGISTRY_PULL=fallback``, any other failure to convert it."""
        image = docker_image.wanted(env.name, env.spec)
        if image is None:
            return False
        uri = docker_image.SCHEME + image.name
        what = "the published image" if image.published else "docker.image"
        policy = pull_policy()
        digest = None
        try:
            if image.published:
                digest = docker_image.resolve(engine.flavour, image.name)
                if digest is None:
                    raise docker_image.ResolveError(docker_image.ABSENT_CODES[0], None)
                uri = docker_image.SCHEME + docker_image.pinned(image.name, digest)
            ready = images.ready_plan(images.parse_source(uri, None), image.python)
            images.ensure_local(engine, ready, progress)
        except (images.ConversionError, docker_image.ResolveError) as exc:
            uri = docker_image.SCHEME + image.name
            if docker_image.is_absent(exc.reason):
                if image.published and policy == "required":
                    raise InstallError("%s is not in the registry and %s=required forbids building the environment "
                                       "(publish it with nbcore push %s)" % (uri, PULL_VARIABLE, env.name)) from None
                progress.step("%s %s is not in the registry: %s" % (what, uri, _next_step(plan.runs)))
                return False
            reason = docker_image.explain(exc.reason, image.name, exc.login)
            failure = "converting %s %s to a SIF file failed: %s" % (what, uri, reason)
            if policy != "fallback":
                raise InstallError("%s (or set %s=fallback to go on without it)" % (failure, PULL_VARIABLE)) from None
            progress.step("%s; %s (%s=fallback)" % (failure, _next_step(plan.runs), PULL_VARIABLE))
            return False
        if image.published:
            docker_image.check_label(engine, ready.image, image)
        docker_image.record(env, uri, image.python, image.name, digest)
        plan.choose(ready)
        progress.step("running %s %s (nothing to build)" % (what, uri))
        return True

    def _step_runner(self, env, engine, settings, plan, progress):
        """Runs the conda builder's steps inside the fallback image, the prefix bound read-write."""
        prefix = str(plan.conda_prefix)

        def run(argv, variables, cwd, step):
            command = exec_command(engine, settings, plan.image, list(argv), dict(variables), cwd, env.path,
                                   is_sif=plan.is_sif, mounts=[Mount(prefix, prefix)])
            progress.run(command.argv, step=step, env=command.env, cwd=command.cwd)
        return run

    def worker_python(self, env):
        return self.plan(env).runs.python

    def _exec(self, env, argv, variables, cwd, worker_path=None):
        plan = self.plan(env)
        runs = plan.runs
        _check_image(env, runs)
        variables, mounts = dict(variables or {}), []
        if runs.conda_prefix is not None:
            variables = dict(conda_fallback.activation(env), **variables)
            mounts.append(Mount(str(runs.conda_prefix), str(runs.conda_prefix), read_only=True))
        return exec_command(require_engine(), plan.settings, runs.image, list(argv), variables, cwd, env.path,
                            worker_path, is_sif=runs.is_sif, mounts=mounts)

    def command(self, env, argv, variables=None, cwd=None):
        """``apptainer exec`` of ``argv`` in the environment's image, set up as the worker's."""
        return self._exec(env, argv, variables, cwd)

    def start_worker(self, env, launch):
        command = self._exec(env, [self.worker_python(env)] + launch.python_args, launch.worker_variables(),
                             launch.cwd, launch.worker_path)
        return SubprocessWorker(command.argv, env=command.env, cwd=command.cwd)

    def shell_command(self, env, argv, cwd=None, terminal=False, variables=None):
        """``apptainer exec`` of ``argv``, else of bash (sh when the image has none); the terminal passes through."""
        return self._exec(env, argv or DEFAULT_SHELL, variables, cwd)


def _check_image(env, runs):
    """Refuse to run a SIF that is no longer the one ``env``'s install recorded (:mod:`nb_apptainer.sif_record`)."""
    if not runs.is_sif:
        return
    try:
        mismatch = sif_record.check(env.path / sif_record.ENVIRONMENT_RECORD, runs.image)
    except OSError:
        return  # no SIF to read: the engine says so
    if mismatch is not None:
        yours = runs.source.runs_in_place and runs.image == runs.local
        raise UserError("the image %s of environment %s changed since it was installed (sha256 %s, installed %s); "
                        "%sreinstall it with nbcore install %s --force"
                        % (runs.image, env.name, mismatch.found[:16], mismatch.recorded[:16],
                           "if you changed it yourself, " if yours else "", env.name))


def _next_step(plan):
    """What making an environment without its Docker image does (for the progress log)."""
    if plan.conda_prefix is not None:
        return "building the environment with conda on %s instead" % plan.source.uri
    if plan.built:
        return "building the image here"
    return "running %s instead" % plan.source.uri
