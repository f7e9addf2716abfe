"""Published environment images against a real registry (Debian's docker-registry on loopback, no mock):
push, pull instead of building, build when absent, refusals and logins."""
import json
import socket

import pytest

from nbcore.host.launch import open_backend, prepare
from nbcore.plugin.store import ensure_installed

from nbtest import run_nbcore, write_docker_credentials

from registrytest import RecordingProgress, write_project

pytestmark = pytest.mark.registry


def install(name, progress=None):
    """Install ``name`` of ./nbcore.yaml with the docker backend; return ``(provider, env, progress)``."""
    progress = progress or RecordingProgress()
    _, provider, env = prepare(name, "nbcore.yaml", backend="docker", install=False)
    ensure_installed(provider, env, progress)
    return provider, env, progress


def push(*args, env=None):
    result = run_nbcore("push", *args, "--backend", "docker", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def forget_locally(name):
    """Remove the environment and its image from this machine (the registry keeps its copy)."""
    _, provider, env = prepare(name, "nbcore.yaml", backend="docker", install=False)
    provider.remove(env)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("nbcore: error:")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_pushed_image_is_pulled_instead_of_built_and_runs(tmp_path, registry_env, open_registry, docker_api):
    from nb_docker.images import LABEL_IMAGE_HASH

    write_project(tmp_path, registry_env, open_registry)
    [pushed] = push(registry_env)
    assert pushed["name"] == registry_env and not pushed["skipped"] and pushed["digest"].startswith("sha256:")
    assert pushed["image"].startswith(open_registry + "/nbcore/%s:" % registry_env)
    forget_locally(registry_env)

    provider, env, progress = install(registry_env)
    assert progress.pulled() and not progress.built(), progress.steps
    assert any(pushed["digest"] in step for step in progress.steps), progress.steps
    plan = provider.plan(env)[1]
    labels = docker_api.inspect_image(plan.tag)["Config"]["Labels"]
    assert labels[LABEL_IMAGE_HASH] == plan.image_hash and pushed["image"].endswith(":" + plan.image_hash[:16])
    with open_backend(registry_env, "nbcore.yaml", backend="docker") as remote:
        assert remote.call("regtestmod:info")["marker"] == "published"

    [again] = push(registry_env, "--skip-existing")
    assert again == dict(pushed, skipped=True)


def test_a_pulled_image_carries_this_homes_labels_and_goes_with_its_environment(tmp_path, registry_env,
                                                                                 open_registry, docker_api, monkeypatch):
    """Published from another NBCORE_HOME (another user, say), the image is this home's once pulled."""
    from nb_docker.images import LABEL_HOME, LABEL_PROJECT, LABEL_PULLED_FROM, LABEL_SPEC_HASH, owner_labels

    write_project(tmp_path, registry_env, open_registry)
    publisher = {"NBCORE_HOME": str(tmp_path / "publisher-home")}
    [pushed] = push(registry_env, env=publisher)
    with monkeypatch.context() as patch:
        patch.setenv("NBCORE_HOME", publisher["NBCORE_HOME"])
        forget_locally(registry_env)
    provider, env, _ = install(registry_env)
    plan = provider.plan(env)[1]
    image = docker_api.inspect_image(plan.tag)
    labels = image["Config"]["Labels"]
    mine = owner_labels(env)
    assert (labels[LABEL_HOME], labels[LABEL_PROJECT]) == (mine[LABEL_HOME], mine[LABEL_PROJECT])
    assert labels[LABEL_SPEC_HASH] == env.spec_hash
    assert labels[LABEL_PULLED_FROM] == "%s@%s" % (pushed["image"], pushed["digest"])
    assert not docker_api.images(name=pushed["image"].rpartition(":")[0]), "the registry name was kept"

    provider.remove(env)
    assert not docker_api.images(name=plan.tag.rpartition(":")[0]), "the pulled image outlived its environment"
    for layer_holder in (image["Id"], image["Parent"] or image["Id"]):
        assert not [i for i in docker_api.images(all=True) if i["Id"] == layer_holder], "a pulled image was left"


def test_an_image_the_registry_does_not_have_is_built_and_said_so(tmp_path, registry_env, open_registry):
    write_project(tmp_path, registry_env, open_registry, marker="built-here")
    _, _, progress = install(registry_env)
    assert any("is not in the registry: building the image here" in step for step in progress.steps), progress.steps
    assert progress.built() and not progress.pulled()


def test_a_registry_that_refuses_is_a_one_line_error_not_a_build(tmp_path, registry_env):
    write_project(tmp_path, registry_env, "127.0.0.1:%d" % free_port())  # nothing listens there: a stopped registry
    result = run_nbcore("install", registry_env, "--backend", "docker")
    line = one_line_error(result)
    assert "connection refused" in line and "NBCORE_REGISTRY_PULL=fallback" in line
    assert "building image" not in result.stderr

    fallback = run_nbcore("install", registry_env, "--backend", "docker", env={"NBCORE_REGISTRY_PULL": "fallback"})
    assert fallback.returncode == 0, fallback.stderr
    assert "building the image instead" in fallback.stderr and "building image" in fallback.stderr


def test_a_login_comes_from_the_docker_config(tmp_path, registry_env, auth_registry):
    write_project(tmp_path, registry_env, auth_registry)
    no_login = run_nbcore("install", registry_env, "--backend", "docker")
    assert "needs a login" in one_line_error(no_login) and "docker login" in no_login.stderr

    write_docker_credentials(tmp_path / "docker-config", auth_registry, password="wrong")
    wrong = run_nbcore("push", registry_env, "--backend", "docker")
    assert "refused the credentials" in one_line_error(wrong)

    write_docker_credentials(tmp_path / "docker-config", auth_registry)
    [pushed] = push(registry_env)
    forget_locally(registry_env)
    _, _, progress = install(registry_env)
    assert progress.pulled() and not progress.built(), progress.steps


def test_a_published_image_of_another_spec_is_rejected(tmp_path, registry_env, open_registry, docker_api):
    from docker.utils import parse_repository_tag

    from nb_docker.publishing import published_name

    write_project(tmp_path, registry_env, open_registry)
    _, provider, env = prepare(registry_env, "nbcore.yaml", backend="docker", install=False)
    impostor = published_name(open_registry, env, provider.plan(env)[1])
    repository, tag = parse_repository_tag(impostor)
    docker_api.tag("nbcore-ci/python:3.11", repository, tag)  # an image without this spec's labels
    for chunk in docker_api.push(repository, tag, stream=True, decode=True):
        assert "error" not in chunk, chunk
    docker_api.remove_image(impostor)

    result = run_nbcore("install", registry_env, "--backend", "docker")
    line = one_line_error(result)
    assert "is not the image of environment %s" % registry_env in line and "org.nbcore.image-hash" in line
    assert not docker_api.images(name=repository), "the rejected image was kept"


def test_push_all_publishes_every_environment_and_a_ready_image_has_nothing_to_publish(tmp_path, registry_env,
                                                                                       open_registry):
    from nbtest import write

    second = registry_env + "-b"
    write(tmp_path / "nbcore.yaml", """
        registry: %s
        environments:
          %s:
            python: "3.11"
            docker: {build_script: "echo a > /published-marker"}
          %s:
            python: "3.11"
            docker: {build_script: "echo b > /published-marker"}
        """ % (open_registry, registry_env, second))
    pushed = push("--all")
    assert [p["name"] for p in pushed] == [registry_env, second] and not any(p["skipped"] for p in pushed)
    assert len({p["image"] for p in pushed}) == 2

    write(tmp_path / "nbcore.yaml", """
        environments:
          %s:
            docker: {image: "nbcore-ci/python:3.11"}
        """ % registry_env)
    ready = run_nbcore("push", registry_env, "--backend", "docker", "--registry", open_registry)
    assert "builds no image of its own to publish" in one_line_error(ready)


def test_an_image_without_this_specs_image_hash_is_not_pushed(tmp_path, registry_env, open_registry, docker_api):
    from docker.utils import parse_repository_tag

    write_project(tmp_path, registry_env, open_registry)
    provider, env, _ = install(registry_env)
    repository, tag = parse_repository_tag(provider.plan(env)[1].tag)
    docker_api.tag("nbcore-ci/python:3.11", repository, tag, force=True)  # what an older nb-docker left: no label
    result = run_nbcore("push", registry_env, "--backend", "docker")
    assert "has no org.nbcore.image-hash label of this spec" in one_line_error(result)
    assert "pushing" not in result.stderr


def test_the_docker_image_capability_names_the_image_push_published(tmp_path, registry_env, open_registry):
    """What other engines fetch (nb-apptainer through ``docker://``) is what ``nbcore push`` pushed."""
    from nbcore.plugin import get_registry

    write_project(tmp_path, registry_env, open_registry)
    [pushed] = push(registry_env)
    spec = prepare(registry_env, "nbcore.yaml", backend="docker", install=False)[2].spec
    image = get_registry().capability("docker-image").image_for(registry_env, spec)
    assert (image.name, image.python, image.published) == (pushed["image"], "/opt/nbcore-env/bin/python", True)


def _impostor(docker_api, parent, marker):
    """An image on top of ``parent`` that keeps its labels (the image-hash one too) but says ``marker``: what a
    registry account that can move tags could publish; return its id."""
    import io

    dockerfile = "FROM %s\nRUN echo %s > /published-marker\n" % (parent, marker)
    image_id = None
    for chunk in docker_api.build(fileobj=io.BytesIO(dockerfile.encode()), decode=True, pull=False, rm=True):
        assert "error" not in chunk, chunk
        image_id = (chunk.get("aux") or {}).get("ID", image_id)
    return image_id


def _move_tag(docker_api, image_id, name):
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(name)
    docker_api.tag(image_id, repository, tag, force=True)
    for chunk in docker_api.push(repository, tag, stream=True, decode=True):
        assert "error" not in chunk, chunk
    docker_api.remove_image(name)


def test_a_tag_moved_after_its_digest_was_resolved_does_not_get_in(tmp_path, registry_env, open_registry,
                                                                   docker_api, monkeypatch):
    """The install pulls the digest it resolved (``repo@sha256:...``), not whatever the tag names a moment later."""
    from nb_docker import publishing

    write_project(tmp_path, registry_env, open_registry)
    provider, env, _ = install(registry_env)
    [pushed] = push(registry_env)
    impostor = _impostor(docker_api, provider.plan(env)[1].tag, "impostor")
    forget_locally(registry_env)

    resolved = publishing.lookup

    def lookup_then_move_the_tag(api, name):
        digest = resolved(api, name)
        _move_tag(docker_api, impostor, name)
        return digest

    monkeypatch.setattr(publishing, "lookup", lookup_then_move_the_tag)
    provider, env, progress = install(registry_env)
    monkeypatch.setattr(publishing, "lookup", resolved)
    assert publishing.lookup(docker_api, pushed["image"]) != pushed["digest"], "the tag did not move"
    with open_backend(registry_env, "nbcore.yaml", backend="docker") as remote:
        assert remote.call("regtestmod:info")["marker"] == "published"
    assert any("%s@%s" % (pushed["image"].rpartition(":")[0], pushed["digest"]) in s for s in progress.steps), \
        progress.steps
    recorded = json.loads((env.path / "published-image.json").read_text())
    assert (recorded["image"], recorded["digest"]) == (pushed["image"], pushed["digest"])


def test_a_local_image_swapped_after_the_digest_was_recorded_is_pulled_again(tmp_path, registry_env, open_registry,
                                                                             docker_api):
    """The environment's tag names another image than the one pulled by digest: the next start notices (a
    warning line), pulls the recorded digest again and runs that."""
    from docker.utils import parse_repository_tag

    write_project(tmp_path, registry_env, open_registry)
    push(registry_env)
    forget_locally(registry_env)
    provider, env, _ = install(registry_env)
    tag = provider.plan(env)[1].tag
    impostor = _impostor(docker_api, tag, "swapped")
    docker_api.tag(impostor, *parse_repository_tag(tag), force=True)

    result = run_nbcore("call", "-c", "nbcore.yaml", registry_env, "regtestmod:info", "--backend", "docker", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["result"]["marker"] == "published"
    warnings = [line for line in result.stderr.splitlines() if "is not the image pulled" in line]
    assert len(warnings) == 1 and "Traceback" not in result.stderr, result.stderr


def test_the_docker_image_capability_resolves_a_published_digest_without_the_daemon(tmp_path, registry_env,
                                                                                    open_registry, auth_registry):
    """What engines without a daemon (nb-apptainer) pin their pulls to: the registry's manifest digest, as pushed."""
    from nbcore.plugin import InstallError, get_registry

    from nbtest import AUTH_PASSWORD, AUTH_USER

    capability = get_registry().capability("docker-image")
    write_project(tmp_path, registry_env, open_registry)
    [pushed] = push(registry_env)
    assert capability.digest(pushed["image"]) == pushed["digest"]
    assert capability.digest(pushed["image"].rpartition(":")[0] + ":0000000000000000") is None
    assert capability.digest(pushed["image"].replace(registry_env, registry_env + "-absent")) is None

    write_project(tmp_path, registry_env, auth_registry)
    write_docker_credentials(tmp_path / "docker-config", auth_registry)
    [behind_login] = push(registry_env)
    with pytest.raises(InstallError, match="UNAUTHORIZED: authentication required"):
        capability.digest(behind_login["image"])
    with pytest.raises(InstallError, match="UNAUTHORIZED: the registry refused the login"):
        capability.digest(behind_login["image"], (AUTH_USER, "wrong"))
    assert capability.digest(behind_login["image"], (AUTH_USER, AUTH_PASSWORD)) == behind_login["digest"]
    with pytest.raises(InstallError, match="Connection refused"):
        capability.digest("127.0.0.1:%d/x/nbcore/e:1" % free_port())
