"""Old-tag removal after a build stays within the cache (NBCORE_HOME) and the project that built the image."""
import uuid

import pytest

from nbcore.host.launch import prepare
from nbcore.plugin.store import ensure_installed
from nbcore.plugin.progress import Progress

from nbtest import write

pytestmark = pytest.mark.docker


class CountingProgress(Progress):
    """Counts the image builds it is told about."""

    def __init__(self):
        super().__init__(quiet=True)
        self.builds = 0

    def step(self, message):
        if message.startswith("building image "):
            self.builds += 1


@pytest.fixture
def env_name(docker_api):
    """An environment name no other test uses (the daemon is shared); its images are removed afterwards."""
    from nb_docker.images import repository_for

    name = "demo-%s" % uuid.uuid4().hex[:8]
    yield name
    for image in docker_api.images(name=repository_for(name)):
        for tag in image.get("RepoTags") or ():
            docker_api.remove_image(tag, force=True)


def project(folder, env_name, marker):
    return write(folder / "nbcore.yaml", """
        environments:
          %s:
            docker:
              build_script: "echo %s > /project"
        """ % (env_name, marker))


def install(config, env_name, home, monkeypatch):
    """Install ``env_name`` of ``config`` into the cache ``home``; return ``(image tag, builds)``."""
    monkeypatch.setenv("NBCORE_HOME", str(home))
    _, provider, env = prepare(env_name, config, backend="docker", install=False)
    progress = CountingProgress()
    ensure_installed(provider, env, progress)
    return provider.plan(env)[1].tag, progress.builds


def test_a_build_keeps_the_images_of_other_projects_and_homes(tmp_path, env_name, docker_api, base_images,
                                                               monkeypatch):
    from nb_docker.images import image_exists

    a, b, c = (project(tmp_path / p, env_name, p) for p in ("a", "b", "c"))
    home_1, home_2 = tmp_path / "home-1", tmp_path / "home-2"
    tag_a, builds = install(a, env_name, home_1, monkeypatch)
    assert builds == 1
    tag_b, builds = install(b, env_name, home_2, monkeypatch)  # same name, another project and home
    assert builds == 1 and tag_b != tag_a
    tag_c, builds = install(c, env_name, home_1, monkeypatch)  # same name and home, another project
    assert builds == 1 and tag_c not in (tag_a, tag_b)
    assert image_exists(docker_api, tag_a) and image_exists(docker_api, tag_b)
    assert install(a, env_name, home_1, monkeypatch) == (tag_a, 0), "project a's image was rebuilt"
    assert install(b, env_name, home_2, monkeypatch) == (tag_b, 0), "project b's image was rebuilt"

    project(tmp_path / "a", env_name, "a-changed")  # a new spec in project a replaces a's old image only
    tag_a2, builds = install(a, env_name, home_1, monkeypatch)
    assert builds == 1 and tag_a2 != tag_a
    assert not image_exists(docker_api, tag_a), "project a's old image was kept"
    assert image_exists(docker_api, tag_b) and image_exists(docker_api, tag_c)


def test_removing_an_environment_keeps_the_same_image_of_another_home(tmp_path, env_name, docker_api, base_images,
                                                                      monkeypatch):
    """Two homes with the same spec share one content-addressed tag; the second home did not build it, so
    removing the environment from the second home (gc, a newer build) must not take the first home's image."""
    from nb_docker.images import image_exists

    config = project(tmp_path / "p", env_name, "p")
    tag, builds = install(config, env_name, tmp_path / "home-1", monkeypatch)
    assert builds == 1
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home-2"))
    _, provider, env = prepare(env_name, config, backend="docker", install=False)
    assert provider.plan(env)[1].tag == tag
    provider.remove(env)
    assert image_exists(docker_api, tag), "another home's image went"
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home-1"))
    _, provider, env = prepare(env_name, config, backend="docker", install=False)
    provider.remove(env)
    assert not image_exists(docker_api, tag), "the home that built it removes it"
