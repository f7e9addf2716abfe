"""nb-docker's ``docker-image`` capability: which Docker image another engine may fetch for an environment
(names only: no daemon, no registry)."""
import pytest

from nbcore import EnvironmentSpec, UserError
from nbcore.plugin.store import make_environment
from nbcore.plugin import CapabilityMissing, get_registry

from nb_docker.backend import DockerBackend
from nbcore.plugin import DockerImage
from nb_docker.plan import configured_registry, published_name

BUILT = {"python": "3.11", "packages": ["numpy"], "docker": {"build_script": "apt-get install -y git"}}


@pytest.fixture(autouse=True)
def no_registry_variables(monkeypatch):
    for name in ("NBCORE_REGISTRY", "NBCORE_REGISTRY_PULL"):
        monkeypatch.delenv(name, raising=False)


def spec_of(data, registry="registry.example:5000/team", base_dir="/project"):
    return EnvironmentSpec.from_dict(data, base_dir=base_dir, registry=registry)


def capability():
    return get_registry().capability("docker-image")


def pushed_name(name, spec, tmp_path):
    """The name ``nbcore push`` (``DockerBackend.publish``) pushes environment ``name`` of ``spec`` to."""
    backend = DockerBackend()
    env = make_environment(tmp_path, backend, name, spec)
    settings, plan = backend.plan(env)
    return published_name(configured_registry(env, settings), env, plan)


def test_a_built_environment_is_offered_under_the_name_push_publishes_it_to(tmp_path):
    spec = spec_of(BUILT)
    image = capability().image_for("demo", spec)
    assert image == DockerImage(pushed_name("demo", spec, tmp_path), "/opt/nbcore-env/bin/python", published=True,
                                image_hash=image.image_hash)
    assert image.name.endswith(":" + image.image_hash[:16]), "the label a pulled image must carry"
    assert image.name.startswith("registry.example:5000/team/nbcore/demo:")
    other_engine = spec_of(dict(BUILT, apptainer={"fallback_image": "/x.sif"}), base_dir="/elsewhere")
    assert capability().image_for("demo", other_engine) == image, "another engine's section and folder do not count"


def test_the_registry_comes_from_the_variable_the_docker_section_then_the_config(monkeypatch):
    own = spec_of(dict(BUILT, docker=dict(BUILT["docker"], registry="own.example")))
    assert capability().image_for("demo", own).name.startswith("own.example/nbcore/demo:")
    monkeypatch.setenv("NBCORE_REGISTRY", "variable.example/")
    assert capability().image_for("demo", own).name.startswith("variable.example/nbcore/demo:")


def test_no_registry_or_the_never_policy_offers_nothing_and_a_bad_policy_is_a_user_error(monkeypatch):
    assert capability().image_for("demo", spec_of(BUILT, registry=None)) is None
    assert capability().fingerprint(spec_of(BUILT, registry=None)) is None
    monkeypatch.setenv("NBCORE_REGISTRY_PULL", "never")
    assert capability().image_for("demo", spec_of(BUILT)) is None
    monkeypatch.setenv("NBCORE_REGISTRY_PULL", "sometimes")
    with pytest.raises(UserError, match="NBCORE_REGISTRY_PULL=sometimes is not a pull policy"):
        capability().image_for("demo", spec_of(BUILT))


def test_a_ready_image_is_offered_as_it_is_with_its_python(monkeypatch):
    monkeypatch.setenv("NBCORE_REGISTRY_PULL", "never")
    ready = spec_of({"docker": {"image": "example.org/method:1", "python_executable": "/usr/bin/python3.9"}}, None)
    assert capability().image_for("demo", ready) == DockerImage("example.org/method:1", "/usr/bin/python3.9", False)
    assert capability().fingerprint(ready) == {"image": "example.org/method:1", "python": "/usr/bin/python3.9"}


def test_the_fingerprint_follows_the_registry_and_what_is_built_but_not_run_settings():
    fingerprint = capability().fingerprint(spec_of(BUILT))
    assert fingerprint["registry"] == "registry.example:5000/team"
    assert capability().image_for("demo", spec_of(BUILT)).name.endswith(":" + fingerprint["image_hash"][:16])
    assert capability().fingerprint(spec_of(BUILT, registry="other.example")) != fingerprint
    assert capability().fingerprint(spec_of(dict(BUILT, packages=["scipy"]))) != fingerprint
    run_only = dict(BUILT, docker=dict(BUILT["docker"], gpus=False, env={"A": "1"}, mounts=["/data"]))
    assert capability().fingerprint(spec_of(run_only)) == fingerprint


def test_without_nb_docker_the_capability_is_missing_and_names_it(monkeypatch, fresh_registry):
    monkeypatch.setenv("NBCORE_DISABLE_PLUGINS", "nb-docker")
    with pytest.raises(CapabilityMissing, match=r"pip install \S*nb-docker provides it"):
        fresh_registry().capability("docker-image")
