"""``nbcore.plugin.environment_ready``: launchers whose machines share NBCORE_HOME ask it from the host."""
import shutil

from nbcore.plugin import EnvironmentSpec, Progress, environment_ready, get_registry, install_environment


def test_environment_ready_follows_the_ready_marker(nbcore_home):
    provider = get_registry().backends["python"]
    spec = EnvironmentSpec.from_dict({"python": None}, source="test")
    named = install_environment(provider, "readiness", spec, Progress(quiet=True), install=False)
    assert not environment_ready(provider, named)
    built = install_environment(provider, "readiness", spec, Progress(quiet=True))
    assert built.path == named.path and environment_ready(provider, named)
    shutil.rmtree(built.path)
    assert not environment_ready(provider, named)
