"""An environment's published Docker image run by apptainer through ``docker://`` (no build), and what happens
when the registry lacks it or refuses: against the real Apptainer and the loopback registry, no mock.

The host published the image of ``ap-published`` with ``nbcore push`` before this run (see
``publishedtest``); the registry comes from ``NBCORE_REGISTRY`` as a user would set it.
"""
import json
import socket

import pytest

from nbcore.host.launch import prepare
from nbcore.plugin.store import ensure_installed

from innertest import CountingProgress, one_error_line, open_env, point_tag
from nbtest import run_nbcore
from publishedtest import ENV_NAME

pytestmark = [pytest.mark.apptainer, pytest.mark.timeout(900)]


def install(progress=None):
    """Install ``ap-published`` with the apptainer backend; return ``(provider, env, steps)``."""
    progress = progress or CountingProgress()
    _, provider, env = prepare(ENV_NAME, "nbcore.yaml", backend="apptainer", install=False)
    ensure_installed(provider, env, progress)
    return provider, env, progress.steps


def built_here(steps):
    return [s for s in steps if s.startswith("building ") or "building the environment with conda" in s]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_published_image_is_converted_through_docker_and_runs_without_a_build(project, published, monkeypatch):
    from nb_apptainer.images import converted_path, parse_source

    registry, image = published
    monkeypatch.setenv("NBCORE_REGISTRY", registry)
    provider, env, steps = install()
    digest = json.loads((env.path / "docker-image").read_text())["digest"]
    uri = "docker://%s@%s" % (image.rpartition(":")[0], digest)  # the digest resolved once, converted by content
    assert digest.startswith("sha256:") and any(s.startswith("converting %s to " % uri) for s in steps), steps
    assert "running the published image %s (nothing to build)" % uri in steps
    assert built_here(steps) == [], steps
    plan = provider.plan(env).runs
    assert plan.image == str(converted_path(parse_source(uri, None))) and not plan.built and plan.conda_prefix is None
    assert plan.python == "/opt/nbcore-env/bin/python" and not (env.path / "conda-prefix").exists()
    with open_env(ENV_NAME) as remote:
        assert remote.backend == "apptainer" and remote.worker_python.startswith("3.11.")
        assert remote.call("nbapptainer_testmod:read", "/published-marker") == "published\n"
        assert remote.call("nbapptainer_testmod:info")["environ"]["VIRTUAL_ENV"] == "/opt/nbcore-env"
    assert ensure_installed(provider, env, CountingProgress()) is False, "the recorded choice is kept"


def test_image_absent_from_the_registry_takes_the_conda_fallback_and_says_so(project, published, conda_channel,
                                                                             monkeypatch):
    registry = published[0] + "/absent"
    monkeypatch.setenv("NBCORE_REGISTRY", registry)
    provider, env, steps = install()
    absent = [s for s in steps if " is not in the registry: " in s]
    assert len(absent) == 1
    assert absent[0].startswith("the published image docker://%s/nbcore/%s:" % (registry, ENV_NAME)), absent
    assert absent[0].endswith("building the environment with conda on %s instead"
                              % env.spec.section("apptainer")["fallback_image"]), absent
    assert not any(s.startswith("building ") for s in steps), "conda, not a SIF build: %s" % steps
    with open_env(ENV_NAME) as remote:
        where = remote.call("nbapptainer_condamod:where")
    assert where["prefix"] == str(env.path / "conda-prefix") and where["activated"] == "yes:%s" % where["prefix"]


def test_a_refusing_registry_is_a_one_line_error_and_fallback_goes_on_without_it(project, conda_channel):
    stopped = {"NBCORE_REGISTRY": "127.0.0.1:%d/team" % free_port()}  # nothing listens there: a stopped registry
    result = run_nbcore("install", ENV_NAME, "--backend", "apptainer", cwd=project, env=stopped)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert line.startswith("nbcore: error: converting the published image docker://%s/nbcore/%s:"
                           % (stopped["NBCORE_REGISTRY"], ENV_NAME)), line
    assert "connection refused" in line and "NBCORE_REGISTRY_PULL=fallback" in line

    fallback = run_nbcore("install", ENV_NAME, "--backend", "apptainer", cwd=project,
                          env=dict(stopped, NBCORE_REGISTRY_PULL="fallback"))
    assert fallback.returncode == 0, fallback.stderr
    assert "connection refused" in fallback.stderr and "building the environment with conda on" in fallback.stderr


def test_required_fails_when_the_registry_lacks_the_image_and_never_does_not_ask(project, published, conda_channel):
    absent = {"NBCORE_REGISTRY": published[0] + "/absent-required", "NBCORE_REGISTRY_PULL": "required"}
    result = run_nbcore("install", ENV_NAME, "--backend", "apptainer", cwd=project, env=absent)
    line = one_error_line(result.stderr)
    assert result.returncode == 2 and "is not in the registry and NBCORE_REGISTRY_PULL=required forbids" in line

    never = run_nbcore("install", ENV_NAME, "--backend", "apptainer", cwd=project,
                       env={"NBCORE_REGISTRY": published[0], "NBCORE_REGISTRY_PULL": "never"})
    assert never.returncode == 0, never.stderr
    assert "nbcore/%s:" % ENV_NAME not in never.stderr, "the registry was asked: %s" % never.stderr


def _forget(provider, env):
    provider.remove(env)
    import shutil
    shutil.rmtree(str(env.path), ignore_errors=True)


def test_a_tag_moved_after_its_digest_was_resolved_does_not_get_in(project, published, monkeypatch, tmp_path):
    """The conversion fetches the digest resolved once (``docker://REPO@sha256:...``), not what the tag names a
    moment later (here: the base image, moved onto the published tag by a registry account)."""
    from nb_apptainer import docker_image

    from conftest import REMOTE_IMAGE

    registry, image = published
    monkeypatch.setenv("NBCORE_REGISTRY", registry)
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "images"))  # no SIF converted before
    _, provider, env = prepare(ENV_NAME, "nbcore.yaml", backend="apptainer", install=False)
    _forget(provider, env)
    resolved, moved = docker_image.resolve, []

    def resolve_then_move_the_tag(flavour, name):
        digest = resolved(flavour, name)
        moved.append(point_tag(name, REMOTE_IMAGE))
        return digest

    monkeypatch.setattr(docker_image, "resolve", resolve_then_move_the_tag)
    try:
        provider, env, steps = install()
    finally:
        if moved:
            point_tag(image, "%s@%s" % (image.rpartition(":")[0], moved[0]))
    uri = "docker://%s@%s" % (image.rpartition(":")[0], moved[0])
    assert "running the published image %s (nothing to build)" % uri in steps, steps
    with open_env(ENV_NAME) as remote:
        assert remote.call("nbapptainer_testmod:read", "/published-marker") == "published\n"
    assert json.loads((env.path / "docker-image").read_text())["digest"] == moved[0]
    _forget(provider, env)


def test_a_published_image_without_this_specs_label_is_rejected_in_one_line(project, published, monkeypatch, tmp_path):
    from conftest import REMOTE_IMAGE

    registry, image = published
    monkeypatch.setenv("NBCORE_REGISTRY", registry)
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "images"))  # no SIF converted before
    _, provider, env = prepare(ENV_NAME, "nbcore.yaml", backend="apptainer", install=False)
    _forget(provider, env)
    before = point_tag(image, REMOTE_IMAGE)  # the tag names an image without the label (the base image)
    try:
        result = run_nbcore("install", ENV_NAME, "--backend", "apptainer", cwd=project)
    finally:
        point_tag(image, "%s@%s" % (image.rpartition(":")[0], before))
    line = one_error_line(result.stderr)
    assert result.returncode == 2 and "is not the image of this environment" in line, line
    assert "org.nbcore.image-hash is missing, expected" in line, line
