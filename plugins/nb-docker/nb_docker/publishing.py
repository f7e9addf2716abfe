"""Published images: an environment's built image in a registry, pulled instead of building it, and pushed there.

The published name is ``REGISTRY/nbcore/<env>:<image hash>``: the hash of what the image
holds (:func:`nb_docker.plan.image_hash`), the same on every machine, so a team's
published image is found by everyone whose spec describes the same image.

An install trusts the registry's answer once: it resolves the name's manifest digest,
pulls ``REPOSITORY@DIGEST`` (the daemon checks the content against it, so a tag moved
meanwhile does not get in), checks the image-hash label, and records name, digest and
the local image made from it in the environment's folder (:data:`RECORD`); every later
start checks that the environment's tag still names that image.
"""
import json
from typing import Optional

import docker.errors
from docker.utils import parse_repository_tag

from nbcore.plugin import InstallError, UserError, log
from nbcore.plugin.containers import PULL_VARIABLE, REGISTRY_VARIABLE, pull_policy

from .images import LABEL_IMAGE_HASH, ImagePlan, adopt, follow_status, pull, registry_failure
from .plan import configured_registry, published_name
from .settings import DockerSettings

#: The file in an environment's folder recording the published image it was pulled from (JSON: ``image``,
#: ``digest``, ``id`` of the local image made from it); written before the ready marker.
RECORD = "published-image.json"


def lookup(api, name: str) -> Optional[str]:
    """The digest of ``name`` in its registry, None when the registry does not have it.

    Raise :class:`InstallError` when the registry cannot tell (login, network, down).
    """
    api.reload_config()
    try:
        return api.inspect_distribution(name)["Descriptor"]["digest"]
    except docker.errors.APIError as exc:
        text = str(exc.explanation or exc)
        if exc.status_code == 404 or "manifest unknown" in text or "name unknown" in text:
            return None
        raise InstallError("looking up %s in its registry failed: %s" % (name, registry_failure(text, name))) from None


def fetch(api, env, plan: ImagePlan, settings: DockerSettings, progress) -> bool:
    """Pull ``env``'s published image and tag it ``plan.tag``; False when it is to be built instead.

    It is built when no registry is configured, the policy is ``never``, the registry
    does not have the image (said through ``progress``), or, with the ``fallback``
    policy, the registry cannot be asked.  A pulled image whose image-hash label is
    not ``plan.image_hash`` is removed again and rejected.
    """
    registry = configured_registry(env, settings)
    policy = pull_policy()
    if registry is None or policy == "never":
        return False
    name = published_name(registry, env, plan)
    progress.step("looking for the published image %s" % name)
    repository = parse_repository_tag(name)[0]
    try:
        digest = lookup(api, name)
        if digest is not None:
            pull(api, "%s@%s" % (repository, digest), progress)
    except InstallError as exc:
        if policy != "fallback":
            raise InstallError("%s (or set %s=fallback to build the image instead)" % (exc, PULL_VARIABLE)) from None
        progress.step("%s; building the image instead (%s=fallback)" % (exc, PULL_VARIABLE))
        return False
    if digest is None:
        if policy == "required":
            raise InstallError("%s is not in the registry and %s=required forbids building it (publish it with "
                               "nbcore push %s)" % (name, PULL_VARIABLE, env.name))
        progress.step("%s is not in the registry: building the image here" % name)
        return False
    pinned = "%s@%s" % (repository, digest)
    _check_pulled(api, pinned, name, env, plan)
    adopt(api, env, plan, pinned, name, digest)
    local_id = api.inspect_image(plan.tag)["Id"]
    (env.path / RECORD).write_text(json.dumps({"image": name, "digest": digest, "id": local_id}) + "\n")
    progress.step("pulled %s as %s" % (pinned, plan.tag))
    return True


def _check_pulled(api, pinned, name, env, plan):
    """Reject (and remove) the image pulled as ``pinned`` unless its content digest and image-hash label are the
    ones expected."""
    image = api.inspect_image(pinned)
    digests = image.get("RepoDigests") or []
    if pinned not in digests:
        api.remove_image(pinned)
        raise InstallError("the published image %s is not the content the registry named: expected %s, found %s"
                           % (name, pinned.partition("@")[2], ", ".join(d.partition("@")[2] for d in digests)
                              or "no digest"))
    found = (image["Config"].get("Labels") or {}).get(LABEL_IMAGE_HASH)
    if found != plan.image_hash:
        api.remove_image(pinned)
        raise InstallError("the published image %s is not the image of environment %s: its label %s is %s, expected "
                           "this spec's image hash %s (publish it again with nbcore push %s)"
                           % (name, env.name, LABEL_IMAGE_HASH, found or "missing", plan.image_hash, env.name))


_warned = set()


def is_the_pulled_image(api, env, plan: ImagePlan) -> bool:
    """Whether ``plan.tag`` still names the image this environment's install made from the published image it
    recorded (True when it pulled nothing); a one-line warning, once, when it names another one."""
    try:
        record = json.loads((env.path / RECORD).read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        record = {}
    found = api.inspect_image(plan.tag)["Id"]
    if isinstance(record, dict) and found == record.get("id"):
        return True
    if plan.tag not in _warned:
        _warned.add(plan.tag)
        log.warning("the image %s is not the image pulled from %s@%s for environment %s (expected %s, found "
                    "%s); pulling it again", plan.tag, record.get("image"), record.get("digest"), env.name,
                    record.get("id"), found)
    return False


def publish(api, env, plan: ImagePlan, settings: DockerSettings, registry: Optional[str], progress,
            skip_existing: bool) -> dict:
    """Push the installed image of ``env`` to ``registry`` (None: :func:`configured_registry`) under its published
    name; with ``skip_existing`` an image the registry already has is not pushed again."""
    if not plan.built:
        raise UserError("environment %s runs the ready image %s: it builds no image of its own to publish"
                        % (env.name, plan.tag))
    registry = (registry or "").rstrip("/") or configured_registry(env, settings)
    if registry is None:
        raise UserError("no registry to push %s to: pass --registry, set %s or add registry: to the config"
                        % (env.name, REGISTRY_VARIABLE))
    name = published_name(registry, env, plan)
    labels = api.inspect_image(plan.tag)["Config"].get("Labels") or {}
    if labels.get(LABEL_IMAGE_HASH) != plan.image_hash:
        raise UserError("the image %s of environment %s has no %s label of this spec (an older nb-docker built it): "
                        "rebuild it with NBCORE_REGISTRY_PULL=never nbcore install --force %s, then push"
                        % (plan.tag, env.name, LABEL_IMAGE_HASH, env.name))
    if skip_existing:
        digest = lookup(api, name)
        if digest is not None:
            progress.step("%s is already in the registry (%s)" % (name, digest))
            return {"name": env.name, "image": name, "digest": digest, "skipped": True}
    repository, tag = parse_repository_tag(name)
    api.tag(plan.tag, repository, tag, force=True)
    progress.step("pushing %s" % name)
    api.reload_config()
    try:
        aux = follow_status(lambda: api.push(repository, tag, stream=True, decode=True), progress,
                            "pushing image %s" % name, name)
    finally:
        api.remove_image(name)  # only the registry name goes; plan.tag keeps the image
    progress.step("pushed %s (%s)" % (name, aux.get("Digest")))
    return {"name": env.name, "image": name, "digest": aux.get("Digest"), "skipped": False}
