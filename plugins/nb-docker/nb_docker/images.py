"""Images: pulling, building and removing them through docker-py (which one an environment runs: :mod:`.plan`)."""
import collections
import hashlib
import io
import re
import secrets

import docker.auth
import docker.errors
from docker.utils import parse_repository_tag

from nbcore.plugin import InstallError, nbcore_home, nbcore_version
from nbcore.plugin.containers import UNREACHABLE_REGISTRY, proxy_variables

from . import __version__, docker_image

from .dockerfile import build_context
from .plan import ImagePlan, repository_for
from .settings import DockerSettings

LABEL_ENV = "org.nbcore.env"
LABEL_SPEC_HASH = "org.nbcore.spec-hash"
LABEL_VERSION = "org.nbcore.version"
LABEL_PLUGIN = "org.nbcore.nb-docker"
#: What the image holds, independent of the machine and project that built it: names its published copy.
LABEL_IMAGE_HASH = docker_image.LABEL_IMAGE_HASH
#: Which cache (``NBCORE_HOME``) and project (the config file's folder) built an image, as stable ids.
LABEL_HOME = "org.nbcore.home"
LABEL_PROJECT = "org.nbcore.project"
#: ``NAME@DIGEST`` of the published image a pulled image was made from.
LABEL_PULLED_FROM = "org.nbcore.pulled-from"
_LOG_LINES = 15
#: Builds are tagged ``<final tag>-attempt-<random>`` first, and with the final tag only once they succeeded and
#: carry this spec's image hash: a build the daemon finishes for an installer that died never takes the final name.
ATTEMPT_MARK = "-attempt-"


def _stable_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def owner_labels(env) -> dict:
    """The labels naming the cache and the project an image is built for; old tags are removed only within them."""
    return {LABEL_HOME: _stable_id(str(nbcore_home())), LABEL_PROJECT: _stable_id(env.spec.base_dir or "")}


def environment_labels(env) -> dict:
    """The labels saying which environment an image serves and who made it here (what removal selects by)."""
    return {LABEL_ENV: env.name, LABEL_SPEC_HASH: env.spec_hash, **owner_labels(env)}


def image_exists(api, name: str) -> bool:
    try:
        api.inspect_image(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def pull(api, name: str, progress) -> None:
    """Pull ``name``, streaming the engine's status lines; raise :class:`InstallError` on failure."""
    progress.step("pulling image %s" % name)
    api.reload_config()  # credentials of the Docker config as they are now (DOCKER_CONFIG, ~/.docker/config.json)
    follow_status(lambda: api.pull(name, stream=True, decode=True), progress, "pulling image %s" % name, name)


def follow_status(request, progress, what: str, image: str) -> dict:
    """Run a streaming pull or push of ``image``, one progress line per layer and status; return its last ``aux``
    record.  Raise :class:`InstallError` naming ``what`` and the reason (:func:`registry_failure`) on failure.
    """
    last, aux = {}, {}
    try:
        for chunk in request():
            if "error" in chunk:
                raise InstallError("%s failed: %s" % (what, registry_failure(chunk["error"], image)))
            aux = chunk.get("aux") or aux
            status = chunk.get("status", "")
            layer = chunk.get("id", "")
            if status and last.get(layer) != status:
                last[layer] = status
                progress.line(("%s: %s" % (layer, status)) if layer else status)
    except docker.errors.APIError as exc:
        raise InstallError("%s failed: %s" % (what, registry_failure(exc.explanation or str(exc), image))) from None
    return aux


#: Registry failures, recognised in the daemon's error text, and what to do about them.
_REGISTRY_FAILURES = (
    ("no basic auth credentials", "the registry needs a login and the Docker config has none for it: run docker login "
                                  "REGISTRY (nbcore reads DOCKER_CONFIG, else ~/.docker/config.json)"),
    ("unauthorized", "the registry refused the credentials of the Docker config: run docker login REGISTRY again"),
    ("denied", "the registry denied access: check the account of docker login REGISTRY has rights to it"),
    ("server gave http response to https client", "the registry speaks plain http: add it to the daemon's "
                                                  "insecure-registries (127.0.0.0/8 needs nothing)"),
) + UNREACHABLE_REGISTRY


def registry_failure(text: str, image: str) -> str:
    """One line saying why a registry request about ``image`` failed, with a fix when the daemon's text is a
    known failure."""
    detail = " ".join(str(text).split())
    registry = docker.auth.resolve_repository_name(image)[0]
    for seen, said in _REGISTRY_FAILURES:
        if seen in detail.lower():
            return "%s [%s]" % (said.replace("REGISTRY", registry), detail[:300])
    return detail[:500]


def ensure_present(api, name: str, progress, why: str) -> None:
    """Pull ``name`` unless the daemon already has it."""
    if image_exists(api, name):
        return
    try:
        pull(api, name, progress)
    except InstallError as exc:
        raise InstallError("%s; the %s is not present locally and could not be pulled (build or load it, "
                                  "or choose another with docker.image or NBCORE_DOCKER_BASE_IMAGE)"
                                  % (exc, why)) from None


def build(api, env, plan: ImagePlan, settings: DockerSettings, progress) -> None:
    """Build ``plan`` with live progress under an attempt's tag, then tag it ``plan.tag`` (:func:`promote`); raise
    :class:`InstallError` naming the failing step."""
    ensure_present(api, plan.recipe.base, progress, "base image")
    context = build_context(plan.recipe, plan.dockerfile)
    labels = {LABEL_IMAGE_HASH: plan.image_hash, LABEL_VERSION: nbcore_version, LABEL_PLUGIN: __version__,
              **environment_labels(env)}
    attempt = attempt_tag(plan)
    progress.step("building image %s from %s" % (plan.tag, plan.recipe.base))
    step, recent = "sending the build context", collections.deque(maxlen=_LOG_LINES)
    try:
        chunks = api.build(fileobj=context, custom_context=True, tag=attempt, labels=labels, decode=True,
                           buildargs=proxy_variables(), network_mode="host", rm=True, forcerm=True, pull=False)
        for chunk in chunks:
            if "error" in chunk:
                raise InstallError(_build_failure(plan.tag, step, chunk["error"], recent))
            for line in (chunk.get("stream") or chunk.get("status") or "").splitlines():
                if re.match(r"^Step \d+/\d+ : ", line):
                    step = line
                    recent.clear()
                    progress.step(line)
                elif line.strip():
                    recent.append(line)
                    progress.line(line)
    except docker.errors.APIError as exc:
        raise InstallError(_build_failure(plan.tag, step, exc.explanation or str(exc), recent)) from None
    promote(api, attempt, plan, "the image built")


def attempt_tag(plan: ImagePlan) -> str:
    """A tag of ``plan``'s repository that no other build uses: what a build is tagged until :func:`promote`."""
    return plan.tag + ATTEMPT_MARK + secrets.token_hex(6)


def is_attempt(tag: str) -> bool:
    """Whether ``tag`` names a build that was not (yet) promoted to its final tag."""
    return ATTEMPT_MARK in parse_repository_tag(tag)[1]


def promote(api, attempt: str, plan: ImagePlan, what: str) -> None:
    """Tag the image built as ``attempt`` with ``plan.tag`` when its image-hash label is ``plan.image_hash`` (else
    raise :class:`InstallError` naming ``what``); the attempt's tag goes either way."""
    try:
        image = api.inspect_image(attempt)
        found = (image["Config"].get("Labels") or {}).get(LABEL_IMAGE_HASH)
        if found != plan.image_hash:
            raise InstallError("%s for %s is not the image of this spec: its label %s is %s, expected %s"
                               % (what, plan.tag, LABEL_IMAGE_HASH, found or "missing", plan.image_hash))
        repository, tag = parse_repository_tag(plan.tag)
        api.tag(image["Id"], repository, tag, force=True)
    except docker.errors.APIError as exc:
        raise InstallError("tagging %s as %s failed: %s" % (what, plan.tag, exc.explanation or exc)) from None
    finally:
        _untag(api, attempt)


def _untag(api, tag: str) -> None:
    try:
        api.remove_image(tag)
    except docker.errors.ImageNotFound:
        pass


def adopt(api, env, plan: ImagePlan, pulled: str, name: str, digest: str) -> None:
    """Tag the image pulled as ``pulled`` (``name`` at ``digest``) as ``plan.tag`` with this environment's labels
    (a child image adding labels only, sharing every layer), so it is removed like a built one; the registry
    reference goes.

    The publisher's labels name another cache, project and spec: kept as they are, the image
    would never be selected for removal here.
    """
    labels = dict(environment_labels(env), **{LABEL_PULLED_FROM: "%s@%s" % (name, digest)})
    dockerfile = io.BytesIO(("FROM %s\n" % pulled).encode())
    attempt = attempt_tag(plan)
    try:
        for chunk in api.build(fileobj=dockerfile, tag=attempt, labels=labels, decode=True, pull=False, rm=True):
            if "error" in chunk:
                raise InstallError("labelling the pulled image %s failed: %s" % (pulled, chunk["error"]))
        promote(api, attempt, plan, "the labelled copy of %s" % pulled)
    except docker.errors.APIError as exc:
        raise InstallError("labelling the pulled image %s failed: %s" % (pulled, exc.explanation or exc)) from None
    finally:
        api.remove_image(pulled)  # only the registry name goes: the image stays as the labelled one's parent


def _build_failure(tag, step, error, recent):
    message = "building image %s failed at %s: %s" % (tag, step, " ".join(str(error).split()))
    if recent:
        message += "\nlast lines of that step:\n" + "\n".join("  " + line for line in recent)
    return message


def remove_old_tags(api, env, keep: str, progress) -> None:
    """Remove this environment's other built tags (older specs or nbcore versions) of the same cache and project,
    and the attempts' tags that builds of installers killed before their end left for this spec (the install lock
    is held: no install of it is running).

    Another project's (or another ``NBCORE_HOME``'s) environment of the same name keeps its images, and an
    attempt's tag of another spec is left to that spec's installs (it goes with its environment).
    """
    repository = repository_for(env.name)
    labels = {LABEL_ENV: env.name, **owner_labels(env)}
    for image in api.images(filters={"label": ["%s=%s" % item for item in sorted(labels.items())]}):
        this_spec = (image.get("Labels") or {}).get(LABEL_SPEC_HASH) == env.spec_hash
        for tag in image.get("RepoTags") or ():
            if tag == keep or parse_repository_tag(tag)[0] != repository or (is_attempt(tag) and not this_spec):
                continue
            what = "the image an interrupted build left" if is_attempt(tag) else "the old image"
            try:
                api.remove_image(tag)
                progress.step("removed %s %s" % (what, tag))
            except docker.errors.APIError as exc:
                progress.step("kept %s %s: %s" % (what, tag, exc.explanation or exc))


def remove_labelled(api, env) -> None:
    """Delete the images built for ``env`` (its name and spec hash) by this cache and project.

    Ready images belong to the user, and images another ``NBCORE_HOME`` or project built or pulled
    may serve environments elsewhere: they stay.
    """
    labels = environment_labels(env)
    images = api.images(filters={"label": ["%s=%s" % item for item in sorted(labels.items())]})
    for tag in dict.fromkeys(tag for image in images for tag in image.get("RepoTags") or ()):
        try:
            api.remove_image(tag)
        except docker.errors.ImageNotFound:
            pass
