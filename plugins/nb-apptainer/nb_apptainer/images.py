"""Images: where an environment's image comes from, which local file or folder the worker runs, and making it.

A spec names a source (``docker://``, ``docker-daemon://``, ``docker-archive://``,
another URI, a ``.sif`` file or a sandbox folder).  Local files and folders run in
place; anything else is converted once to a SIF file in the image cache
(:func:`nb_apptainer.settings.image_cache`), named by its content, with a record of its
sha256 that every later install checks before reusing it (:mod:`nb_apptainer.sif_record`).  When the spec
installs anything, a SIF is built on top of that local image from the core's
neutral recipe, named by the spec hash, the definition file and the files it copies,
and kept in the environment's folder: it goes with the environment (``nbcore gc``,
and the core's removal of older builds of the same environment and project).
"""
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from nbcore.plugin import InstallError, Progress
from nbcore.plugin.containers import ENV_PYTHON, BuildRecipe, proxy_variables, python_environment_recipe

from . import conda_fallback, docker_image, registry_login, sif_record
from .definition import render_definition, write_build_folder
from .settings import BASE_IMAGE_VARIABLE, CACHE_VARIABLE, ApptainerSettings, base_image, image_cache

#: URI schemes Apptainer converts (``docker-daemon:`` and ``docker-archive:`` also take a single colon).
CONVERTED_SCHEMES = ("docker", "docker-daemon", "docker-archive", "oras", "library", "shub", "https", "http")
#: Free space below which an image cache in the home folder gets a warning (HPC homes are small).
SMALL_HOME_BYTES = 5 * 10 ** 9
MOVE_CACHES = ("point NBCORE_APPTAINER_CACHE and APPTAINER_CACHEDIR (or NBCORE_HOME) at a larger disk, e.g. project "
               "or scratch space")
#: Lines of a failed build's log quoted in the error.
LOG_TAIL_LINES = 12
#: The definition file's name in a build folder.
DEFINITION_FILE = "nbcore.def"


@dataclasses.dataclass(frozen=True)
class Source:
    """An image as the spec names it: ``uri`` for the engine, ``path`` when it is a local file or folder."""

    uri: str
    scheme: Optional[str]
    path: Optional[str] = None

    @property
    def runs_in_place(self) -> bool:
        """A SIF file or a sandbox folder: used where it lies, never copied."""
        return self.scheme is None

    def fingerprint(self) -> dict:
        """What identifies the content of a local source (size and modification time), or its URI alone."""
        if self.path is None:
            return {"uri": self.uri}
        try:
            stat = os.stat(self.path)
        except OSError:
            return {"uri": self.uri, "missing": True}
        return {"uri": self.uri, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def parse_source(text: str, base_dir: Optional[str]) -> Source:
    """The :class:`Source` ``text`` names; relative paths are relative to ``base_dir`` (the config's folder)."""
    match = re.match(r"^([a-z][a-z0-9+.-]*):(//)?(.*)$", text)
    if match and match.group(1) in CONVERTED_SCHEMES:
        scheme, rest = match.group(1), match.group(3)
        if scheme == "docker-archive":
            path = _local_path(rest, base_dir)
            return Source("docker-archive://" + path, scheme, path)
        return Source("%s://%s" % (scheme, rest), scheme)
    path = _local_path(text, base_dir)
    return Source(path, None, path)


def _local_path(text, base_dir):
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = Path(base_dir or os.getcwd()) / path
    return os.path.normpath(str(path))


@dataclasses.dataclass(frozen=True)
class ImagePlan:
    """The image an environment runs (:attr:`image`, a SIF file or sandbox folder) and how it is made."""

    source: Source
    #: The local base: the source itself, or the SIF it is converted to.
    local: str
    #: What the worker runs: :attr:`local`, or the SIF built on top of it.
    image: str
    python: str
    recipe: Optional[BuildRecipe] = None
    definition: Optional[str] = None
    #: The conda prefix bound in (the conda fallback), or None.
    conda_prefix: Optional[Path] = None

    @property
    def built(self) -> bool:
        return self.recipe is not None

    @property
    def is_sif(self) -> bool:
        """Whether the worker runs a SIF file (mounted with FUSE) rather than a sandbox folder."""
        return not os.path.isdir(self.image)


def image_source(settings: ApptainerSettings, spec) -> Source:
    """The source the spec starts from: its ``image``, else the default base image."""
    return parse_source(settings.image or base_image(spec.python), spec.base_dir)


def converted_path(source: Source) -> Path:
    """The cached SIF of a source that is not local, named by its URI (and the archive's size and time)."""
    digest = hashlib.sha256(repr(sorted(source.fingerprint().items())).encode()).hexdigest()[:16]
    return image_cache() / ("%s-%s.sif" % (_slug(source.uri.split("://", 1)[-1])[:60], digest))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "image"


def _local_of(source: Source) -> str:
    return source.path if source.runs_in_place else str(converted_path(source))


def plan_image(env, settings: ApptainerSettings) -> ImagePlan:
    """A ready image when the spec builds nothing, else a SIF built from the rendered recipe, named by content;
    the generic image with a conda prefix when the spec runs on conda (:mod:`nb_apptainer.conda_fallback`); the
    converted Docker image its install chose (:mod:`nb_apptainer.docker_image`) before all."""
    spec = env.spec
    chosen = docker_image.recorded(env)
    if chosen is not None:
        return ready_plan(parse_source(chosen.uri, None), chosen.python)
    if conda_fallback.in_use(env, settings.image is not None):
        source = parse_source(settings.fallback_image, spec.base_dir)
        prefix = conda_fallback.prefix_of(env)
        return ImagePlan(source=source, local=_local_of(source), image=_local_of(source),
                         python=str(prefix / "bin" / "python"), conda_prefix=prefix)
    source = image_source(settings, spec)
    local = _local_of(source)
    if not (settings.build_script or spec.packages or spec.install_script):
        return ready_plan(source, settings.python_executable)
    recipe = python_environment_recipe(spec, source.uri, settings.python_executable, settings.ca_bundle,
                                       settings.build_script,
                                       base_hint=" (apptainer.image, or %s)" % BASE_IMAGE_VARIABLE)
    definition = render_definition(recipe, local)
    content = hashlib.sha256((env.spec_hash + "\0" + definition).encode())
    for target, (data, mode) in sorted(recipe.files.items()):
        content.update(("\0%s\0%o\0" % (target, mode)).encode() + hashlib.sha256(data).digest())
    image = env.path / (content.hexdigest()[:16] + ".sif")
    return ImagePlan(source=source, local=local, image=str(image), python=ENV_PYTHON, recipe=recipe,
                     definition=definition)


def ready_plan(source: Source, python: str) -> ImagePlan:
    """The plan of running ``source`` as it is (converted to a cached SIF unless it is local) with ``python``."""
    return ImagePlan(source=source, local=_local_of(source), image=_local_of(source), python=python)


class ConversionError(InstallError):
    """An image could not be converted to a SIF file; :attr:`reason` is the engine's, :attr:`login` the registry
    login it offered (a :class:`~nb_apptainer.registry_login.Login`, None for a source from no registry)."""

    def __init__(self, message: str, uri: str, reason: str, login=None):
        super().__init__(message)
        self.uri, self.reason, self.login = uri, reason, login


def ensure_local(engine, plan: ImagePlan, progress) -> None:
    """Make sure the local base exists: check a local source, convert any other one to a cached SIF (raise
    :class:`ConversionError` when that fails).  A ``docker://`` conversion gets the Docker config's login for its
    registry when the engine would not find one itself (:mod:`nb_apptainer.registry_login`)."""
    source = plan.source
    if source.path is not None and not os.path.exists(source.path):
        raise InstallError("image %s not found: give apptainer.image an existing .sif file, sandbox folder or "
                           "docker-archive:// file" % source.path)
    if source.runs_in_place or _cached_intact(plan.local, progress):
        return
    target = Path(plan.local)
    _make_writable_folder(target.parent, "the image cache %s" % target.parent, CACHE_VARIABLE)
    small = _small_home_cache(target.parent)
    if small:
        progress.step("warning: " + small)
    login = registry_login.login_for(engine.flavour, source.uri) if source.scheme == "docker" else None
    options = ["--authfile", login.authfile] if login is not None and login.authfile else []
    try:
        _build_into(engine, target, [source.uri], progress, "converting %s to %s" % (source.uri, target),
                    fakeroot=False, options=options)
    except InstallError as exc:
        reason = _engine_message(str(exc))
        hint = "check that it exists, or name another in apptainer.image"
        if "no space left" in reason.lower():
            hint = "make room, or " + MOVE_CACHES
        raise ConversionError("image %s could not be converted to a SIF file (%s); %s" % (source.uri, reason, hint),
                              source.uri, reason, login) from None
    sif_record.record(sif_record.cache_record(target), str(target))


def _cached_intact(sif: str, progress) -> bool:
    """Whether the cache holds the converted ``sif`` as it was converted; a changed one is removed."""
    if not os.path.exists(sif):
        return False
    mismatch = sif_record.check(sif_record.cache_record(sif), sif)
    if mismatch is None:
        return True
    progress.step("the cached image %s changed since it was converted (sha256 %s, converted %s); converting it again"
                  % (sif, mismatch.found[:16], mismatch.recorded[:16]))
    try:
        os.unlink(sif)
    except OSError as exc:
        raise InstallError("the cached image %s changed since it was converted and cannot be removed (%s); remove it, "
                           "or set %s to a folder of your own" % (sif, exc.strerror, CACHE_VARIABLE)) from None
    return False


def _small_home_cache(folder: Path) -> Optional[str]:
    """A warning when ``folder`` lies in the home folder and its disk has little room left, else None."""
    home = os.path.realpath(os.path.expanduser("~"))
    inside = os.path.realpath(str(folder))
    if inside != home and not inside.startswith(home + os.sep):
        return None
    free = shutil.disk_usage(inside).free
    if free >= SMALL_HOME_BYTES:
        return None
    return "the image cache %s is in your home, which has %.1f GB free; %s" % (folder, free / 1e9, MOVE_CACHES)


def build(engine, plan: ImagePlan, progress) -> None:
    """Build the plan's SIF from its definition file; raise :class:`InstallError` with the log's last lines."""
    target = Path(plan.image)
    build_folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        write_build_folder(plan.recipe, build_folder, proxy_variables())
        (build_folder / DEFINITION_FILE).write_text(plan.definition)
        _build_into(engine, target, [DEFINITION_FILE], progress, "building %s from %s" % (target, plan.local),
                    fakeroot=os.getuid() != 0, cwd=build_folder)
    finally:
        shutil.rmtree(build_folder, ignore_errors=True)


def _engine_message(failure: str) -> str:
    """The engine's own words in a failed step's message (``STEP failed: FATAL: ...``)."""
    words = failure.split("\n", 1)[0].split(" failed: ", 1)[-1]
    return " ".join(re.sub(r"^(FATAL|ERROR):\s*(While performing build:\s*)?", "", words).split())


def _build_into(engine, target: Path, arguments, progress, step, fakeroot, cwd=None, options=()):
    """``apptainer build [options]`` to a temporary name beside ``target``, renamed once complete; a failure's
    message ends with the last lines of the build's log."""
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix="." + target.stem + "-", suffix=".sif.partial")
    os.close(fd)
    os.unlink(temporary)  # apptainer refuses to overwrite a file
    argv = ([engine.executable, "build"] + (["--fakeroot"] if fakeroot else []) + list(options) + [temporary]
            + list(arguments))
    progress.step(step)
    log = Progress(stream=progress.stream, quiet=progress.quiet)  # a tail of this build's lines alone
    try:
        log.run(argv, cwd=cwd)
        os.replace(temporary, target)
    except InstallError as exc:
        tail = [line for line in log.tail.lines() if line.strip()][-LOG_TAIL_LINES:]
        message = "%s failed: %s" % (step, tail[-1].strip() if tail else exc)
        if len(tail) > 1:
            message += "\nlast lines of the log:\n" + "\n".join("  " + line for line in tail)
        raise InstallError(message) from None
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


def _make_writable_folder(folder: Path, what: str, variable: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError("cannot create %s (%s); set %s to a writable folder" % (what, exc.strerror, variable)) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InstallError("%s is not writable; set %s to a writable folder" % (what, variable))
