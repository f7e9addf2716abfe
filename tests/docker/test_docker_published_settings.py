"""What decides an environment's published image and its run setup (registry, pull policy, image hash,
build_args, ulimits, model caches), and the nbcore push command's own errors (no daemon)."""
import dataclasses
from pathlib import Path

import pytest

from nbcore import ConfigError, Environment, EnvironmentSpec, UserError
from nbcore.host.config import config_from_dict

from nb_docker.backend import DockerBackend
from nb_docker.container import MODEL_CACHE_TARGET, container_config
from nb_docker.images import registry_failure
from nb_docker.plan import plan_image
from nb_docker.publishing import configured_registry, pull_policy, published_name
from nb_docker.settings import DockerSettings, worker_ulimits

from nbtest import run_nbcore, write


def environment(section=None, base_dir="/project", registry=None, **generic):
    data = dict(generic, docker=section or {})
    spec = EnvironmentSpec.from_dict(data, base_dir=base_dir, registry=registry)
    return Environment("demo", spec, "docker", spec.identity("docker"), Path("/nowhere/demo"))


def image_plan(env):
    return plan_image(env, DockerSettings.from_spec(env.spec))


def test_the_top_level_registry_reaches_every_spec_and_is_not_part_of_its_identity():
    backends = {"docker": DockerBackend()}
    config = config_from_dict({"registry": "registry.example.org:5000/team", "environments": {"a": {}}}, backends)
    assert config.registry == config.spec("a").registry == "registry.example.org:5000/team"
    plain = config_from_dict({"environments": {"a": {}}}, backends)
    assert config.spec("a").identity("docker") == plain.spec("a").identity("docker")
    with pytest.raises(ConfigError, match="registry"):
        config_from_dict({"registry": "has space", "environments": {"a": {}}}, backends)


def test_the_registry_variable_wins_over_the_env_section_which_wins_over_the_top_level(monkeypatch):
    monkeypatch.delenv("NBCORE_REGISTRY", raising=False)
    top = environment(registry="top.example")
    assert configured_registry(top, DockerSettings.from_spec(top.spec)) == "top.example"
    own = environment({"registry": "own.example/"}, registry="top.example")
    assert configured_registry(own, DockerSettings.from_spec(own.spec)) == "own.example"
    monkeypatch.setenv("NBCORE_REGISTRY", "variable.example")
    assert configured_registry(own, DockerSettings.from_spec(own.spec)) == "variable.example"
    monkeypatch.delenv("NBCORE_REGISTRY")
    none = environment()
    assert configured_registry(none, DockerSettings.from_spec(none.spec)) is None


def test_an_unknown_pull_policy_is_a_user_error(monkeypatch):
    monkeypatch.setenv("NBCORE_REGISTRY_PULL", "sometimes")
    with pytest.raises(UserError, match="NBCORE_REGISTRY_PULL=sometimes is not a pull policy"):
        pull_policy()


def test_the_image_hash_ignores_the_project_folder_and_run_settings_but_not_what_is_built():
    script = {"install_script": "echo hi", "packages": ["numpy"]}
    here, there = environment(base_dir="/home/a/project", **script), environment(base_dir="/home/b/clone", **script)
    assert here.spec_hash != there.spec_hash, "the environment hash counts the folder of an install script"
    assert image_plan(here).image_hash == image_plan(there).image_hash
    run_only = environment({"registry": "r.example", "gpus": False, "ulimits": {"stack": 1}, "env": {"A": "1"},
                            "model_caches": []}, **script)
    assert image_plan(run_only).image_hash == image_plan(here).image_hash
    for built in ({"build_args": {"TORCH_CUDA_ARCH_LIST": "8.6"}}, {"build_script": "apt-get install -y git"}):
        assert image_plan(environment(built, **script)).image_hash != image_plan(here).image_hash
    assert published_name("r.example/team", here, image_plan(here)) == \
        "r.example/team/nbcore/demo:%s" % image_plan(here).image_hash[:16]


def test_build_args_are_build_only_variables_of_the_dockerfile():
    dockerfile = image_plan(environment({"build_args": {"TORCH_CUDA_ARCH_LIST": "7.0 8.6+PTX", "MAX_JOBS": "2"}})
                            ).dockerfile
    assert 'ARG TORCH_CUDA_ARCH_LIST="7.0 8.6+PTX"' in dockerfile and "ARG MAX_JOBS=2" in dockerfile
    assert dockerfile.index("ARG TORCH_CUDA_ARCH_LIST") < dockerfile.index("RUN ")


def test_ulimits_default_to_what_gpu_code_needs_lowered_to_what_the_daemon_grants():
    defaults = DockerSettings.from_spec(environment().spec)
    assert worker_ulimits(defaults, {}) == {"memlock": -1, "stack": 67108864}
    assert worker_ulimits(defaults, {"memlock": 8388608, "stack": -1}) == {"memlock": 8388608, "stack": 67108864}
    own = DockerSettings.from_spec(environment({"ulimits": {"memlock": None, "nofile": 4096, "stack": -1}}).spec)
    assert worker_ulimits(own, {"stack": 8388608}) == {"nofile": 4096, "stack": -1}, "a spec's own value stays"


def test_model_caches_are_host_folders_under_the_home_and_ulimits_reach_docker_run(tmp_path):
    env = environment({"model_caches": ["TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME"], "user": "1000:1000"})
    config = container_config(env, DockerSettings.from_spec(env.spec), "img:tag", ["python"], {}, tmp_path,
                              tmp_path / "home", "worker")
    by_target = {m.target: m.source for m in config.mounts}
    for variable in ("TORCH_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        target = "%s/%s" % (MODEL_CACHE_TARGET, variable)
        assert config.environment[variable] == target
        assert by_target[target] == str(tmp_path / "home" / "cache" / "docker-models" / "1000" / variable)
        assert Path(by_target[target]).is_dir()
    argv = dataclasses.replace(config, ulimits={"memlock": -1, "stack": 67108864}).cli_argv("docker", False)
    assert "memlock=-1:-1" in argv and "stack=67108864:67108864" in argv
    none = environment({"model_caches": []})
    assert "TORCH_HOME" not in container_config(none, DockerSettings.from_spec(none.spec), "i", [], {}, tmp_path,
                                                tmp_path / "home", "worker").environment


def test_registry_failures_say_what_to_do():
    assert "run docker login r.example:5000" in registry_failure(
        'Head "http://r.example:5000/v2/x/manifests/y": no basic auth credentials', "r.example:5000/x:y")
    assert "refused the credentials" in registry_failure("unauthorized: authentication required", "r.example/x:y")
    assert "connection refused" in registry_failure("dial tcp 127.0.0.1:1: connect: connection refused", "x")
    assert "insecure-registries" in registry_failure(
        'Get "https://r.example/v2/": http: server gave HTTP response to HTTPS client', "r.example/x:y")


def test_push_needs_one_environment_or_all_and_a_backend_with_images(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  plain: {}\n")
    neither = run_nbcore("push", cwd=tmp_path)
    assert neither.returncode == 2 and "needs an environment name or --all" in neither.stderr
    venv = run_nbcore("push", "plain", "--backend", "venv", "--registry", "r.example", cwd=tmp_path,
                      env={"NBCORE_HOME": str(tmp_path / "home")})
    assert venv.returncode == 2 and "the venv backend cannot publish images" in venv.stderr
    assert "Traceback" not in venv.stderr
