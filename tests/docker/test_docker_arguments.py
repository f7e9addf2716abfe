"""What nb-docker asks the engine for: spec section, Dockerfile, image plan, container arguments (no daemon)."""
import dataclasses
import os
import sys
from pathlib import Path

import pytest

from nbcore import ConfigError, Environment, EnvironmentSpec, WorkerLaunch
from nbcore.host.config import config_from_dict

from nb_docker.backend import DockerBackend
from nbcore.plugin.containers import CA_TARGET, ENV_PYTHON, parse_mount, proxy_variables, python_environment_recipe
from nb_docker.container import PIP_CACHE_TARGET, container_config
from nb_docker.dockerfile import build_context, render_dockerfile
from nb_docker.plan import plan_image, repository_for
from nb_docker.settings import DockerSettings, base_image


def environment(section=None, name="demo", **generic):
    data = dict(generic)
    if section is not None:
        data["docker"] = section
    spec = EnvironmentSpec.from_dict(data, base_dir="/project")
    return Environment(name, spec, "docker", spec.identity("docker"), Path("/nowhere") / name)


def launch(tmp_path):
    worker = tmp_path / "worker"
    worker.mkdir(exist_ok=True)
    return WorkerLaunch(worker_path=worker, cwd=tmp_path, variables={"NBCORE_WORKER_SECRET": "s3cret"})


def generate_dockerfile(spec, base, python_executable, ca_bundle, build_script):
    return render_dockerfile(python_environment_recipe(spec, base, python_executable, ca_bundle, build_script))


def plan(env):
    return plan_image(env, DockerSettings.from_spec(env.spec))


def config_for(env, tmp_path):
    env = dataclasses.replace(env, path=tmp_path / "envs" / env.name)
    env.path.mkdir(parents=True, exist_ok=True)
    worker = launch(tmp_path)
    return container_config(env, DockerSettings.from_spec(env.spec), "img:tag", ["python", "-m", "nbcore.worker"],
                            worker.worker_variables(), worker.cwd, tmp_path / "home", "worker", worker.worker_path)


def test_section_is_validated_by_the_schema():
    backends = {"docker": DockerBackend()}
    config_from_dict({"environments": {"e": {"docker": {"image": "x", "user": "1000:1000", "gpus": False,
                                                        "mounts": ["/data", "./in:/in:ro"]}}}}, backends)
    with pytest.raises(ConfigError, match="unknown key 'environments.e.docker.imagee'"):
        config_from_dict({"environments": {"e": {"docker": {"imagee": "x"}}}}, backends)
    with pytest.raises(ConfigError, match="user"):
        config_from_dict({"environments": {"e": {"docker": {"user": "alice"}}}}, backends)


def test_base_image_defaults_to_the_wanted_python_and_follows_the_variable(monkeypatch):
    monkeypatch.delenv("NBCORE_DOCKER_BASE_IMAGE", raising=False)
    assert base_image("3.9.18") == "python:3.9-slim"
    assert base_image(None) == "python:%d.%d-slim" % sys.version_info[:2]
    monkeypatch.setenv("NBCORE_DOCKER_BASE_IMAGE", "local/py:{python}")
    assert base_image("3.13") == "local/py:3.13"


def test_ready_image_is_run_as_is_and_anything_to_install_makes_a_build(monkeypatch):
    monkeypatch.delenv("NBCORE_DOCKER_BASE_IMAGE", raising=False)
    ready = plan(environment({"image": "me/ready:1"}))
    assert (ready.tag, ready.python, ready.built) == ("me/ready:1", "python3", False)
    env = environment({"image": "me/base:1", "build_script": "apt-get update"}, packages=["numpy"])
    built = plan(env)
    assert built.built and built.recipe.base == "me/base:1" and built.python == ENV_PYTHON
    assert built.tag.startswith("nbcore/demo:")
    other = environment({"image": "me/base:1", "build_script": "apt-get update"}, packages=["numpy", "scipy"])
    assert plan(other).tag != built.tag
    assert plan(environment(None, python="3.10")).recipe.base == "python:3.10-slim"


def test_dockerfile_installs_into_a_venv_with_the_ca_available_only_at_build_time(tmp_path):
    spec = EnvironmentSpec.from_dict({"python": "3.11", "packages": ["numpy>=1.20", "torch"],
                                      "install_script": "echo hi"})
    ca = tmp_path / "ca.crt"
    ca.write_text("CERT")
    text = generate_dockerfile(spec, "base:1", "python3", str(ca), build_script="apt-get -y install git")
    lines = text.splitlines()
    assert lines[1] == "FROM base:1"
    assert "COPY files%s %s" % (CA_TARGET, CA_TARGET) in lines
    assert "ARG PIP_CERT=" + CA_TARGET in lines and "ARG SSL_CERT_FILE=" + CA_TARGET in lines
    assert not any(line.startswith("ENV") and "PIP_CERT" in line for line in lines)
    order = [next(i for i, line in enumerate(lines) if marker in line)
             for marker in ("pipefail build_script.sh", '"venv", "--system-site-packages"', "'3.11'",
                            '"numpy>=1.20", "torch"', "pipefail install_script.sh")]
    assert order == sorted(order)
    assert "ca-certificates" not in generate_dockerfile(spec, "base:1", "python3", None, build_script=None)


def test_build_context_holds_the_dockerfile_ca_and_scripts(tmp_path):
    import tarfile

    ca = tmp_path / "ca.crt"
    ca.write_text("CERT")
    recipe = python_environment_recipe(EnvironmentSpec(), "x", "python3", str(ca), "true")
    context = build_context(recipe, render_dockerfile(recipe))
    with tarfile.open(fileobj=context) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "files" + CA_TARGET, "files/nbcore-build/build_script.sh"]
        assert tar.extractfile("files" + CA_TARGET).read() == b"CERT"
        assert tar.getmember("files/nbcore-build/build_script.sh").mode == 0o755


def test_repository_names_are_valid():
    assert repository_for("My_Env.v2") == "nbcore/my-env-v2"
    assert repository_for("__") == "nbcore/env"


def test_mount_syntax():
    assert parse_mount("/data", None) == parse_mount("/data:/data:rw", None)
    mount = parse_mount("in:/in:ro", "/project")
    assert (mount.source, mount.target, mount.read_only) == ("/project/in", "/in", True)


def test_worker_container_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("SOME_SECRET", "not forwarded")
    monkeypatch.setenv("MY_VAR", "forwarded on request")
    env = environment({"mounts": ["/data:/data:ro"], "env": {"A": "1"}, "forward_env": ["MY_VAR"], "gpus": False})
    config = config_for(env, tmp_path)
    assert config.user == "%d:%d" % (os.getuid(), os.getgid())
    assert config.working_dir == str(tmp_path)
    targets = {m.target: m for m in config.mounts}
    assert targets[str(tmp_path / "worker")].read_only
    assert not targets[str(tmp_path)].read_only
    assert targets["/data"].read_only and PIP_CACHE_TARGET in targets
    variables = config.environment
    assert variables["PYTHONPATH"] == str(tmp_path / "worker")
    assert variables["NBCORE_WORKER_SECRET"] == "s3cret"
    assert (variables["CUDA_VISIBLE_DEVICES"], variables["HTTPS_PROXY"], variables["A"]) == ("1", "http://proxy:3128", "1")
    assert variables["MY_VAR"] == "forwarded on request" and "SOME_SECRET" not in variables
    bytecode = tmp_path / "envs" / "demo" / "worker-bytecode"
    assert not targets[str(bytecode)].read_only and variables["NBCORE_WORKER_PYCACHE"] == str(bytecode), \
        "the worker keeps its bytecode in the environment's folder"
    if os.path.isfile("/etc/ssl/certs/ca-certificates.crt"):
        assert targets[CA_TARGET].read_only and variables["PIP_CERT"] == CA_TARGET

    class Api:
        def create_host_config(self, **kwargs):
            return kwargs

    host_config = config.create_kwargs(Api())["host_config"]
    assert (host_config["ipc_mode"], host_config["network_mode"], host_config["auto_remove"]) == ("host", "host", True)
    assert host_config["device_requests"] is None
    data = next(m for m in host_config["mounts"] if m["Target"] == "/data")
    assert (data["Source"], data["Type"], data["ReadOnly"]) == ("/data", "bind", True)


def test_a_working_directory_with_colons_and_commas_mounts(tmp_path):
    odd = tmp_path / "a:b,c"
    odd.mkdir()
    worker = launch(tmp_path)
    config = container_config(environment({"gpus": False}), DockerSettings.from_spec(environment({}).spec), "img",
                              ["true"], {}, odd, tmp_path / "home", "shell")
    assert config.working_dir == str(odd)
    argv = config.cli_argv("docker", interactive=False)
    assert 'type=bind,"source=%s","target=%s"' % (odd, odd) in argv
    assert str(worker.worker_path) not in [m.source for m in config.mounts]


def test_gpus_and_users(tmp_path):
    env = environment({"gpus": True, "user": "4321"})
    config = config_for(env, tmp_path)
    assert config.gpus and config.user == "4321:4321" and config.environment["HOME"] == "/tmp"

    class Api:
        def create_host_config(self, **kwargs):
            return kwargs

    request = config.create_kwargs(Api())["host_config"]["device_requests"][0]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert "--gpus" in config.cli_argv("docker", interactive=False)
    as_root = config_for(environment({"user": "root"}), tmp_path)
    assert as_root.user == "0:0"
    if os.getuid() != 0:
        assert "NBCORE_WORKER_PYCACHE" not in as_root.environment, "another uid's files would stay in the folder"


def test_shell_argv_keeps_values_out_of_the_command_line(tmp_path):
    config = config_for(environment({"gpus": False}), tmp_path)
    argv = config.cli_argv("docker", interactive=True)
    assert argv[:3] == ["docker", "run", "--rm"] and "-t" in argv and "-i" in argv
    assert "s3cret" not in " ".join(argv) and "NBCORE_WORKER_SECRET" in argv
    assert argv[-4:] == ["img:tag", "python", "-m", "nbcore.worker"]
    assert "-t" not in config.cli_argv("docker", interactive=False)


def test_proxies_become_build_arguments(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert proxy_variables() == {"https_proxy": "http://proxy:3128", "NO_PROXY": "localhost"}


def test_shell_command_has_a_terminal_only_when_asked_and_defaults_to_bash(tmp_path, monkeypatch):
    from nb_docker import backend

    monkeypatch.setattr(backend.shutil, "which", lambda name: "/usr/bin/docker")
    env = environment({"image": "img:tag", "gpus": False})
    provider = backend.DockerBackend()
    with_terminal = provider.shell_command(env, [], tmp_path, terminal=True, variables={"TERM": "xterm-256color"})
    assert "-t" in with_terminal.argv and "-i" in with_terminal.argv
    assert with_terminal.argv[-len(backend.DEFAULT_SHELL):] == backend.DEFAULT_SHELL
    assert with_terminal.env["TERM"] == "xterm-256color" and "TERM" in with_terminal.argv
    piped = provider.shell_command(env, ["cat"], tmp_path)
    assert "-t" not in piped.argv and "-i" in piped.argv and piped.argv[-1] == "cat"


def test_the_base_image_variable_makes_another_environment_and_the_default_keeps_the_hash(monkeypatch):
    backend = DockerBackend()
    generated = EnvironmentSpec.from_dict({"python": "3.11", "packages": ["numpy"]}, base_dir="/project")
    ready = EnvironmentSpec.from_dict({"docker": {"image": "me/ready:1"}}, base_dir="/project")
    monkeypatch.delenv("NBCORE_DOCKER_BASE_IMAGE", raising=False)
    default = generated.identity("docker", backend.identity(generated))
    assert default == generated.identity("docker", {})
    monkeypatch.setenv("NBCORE_DOCKER_BASE_IMAGE", "local/python:{python}")
    assert backend.identity(generated) == {"base_image": "local/python:3.11"}
    assert generated.identity("docker", backend.identity(generated)) != default
    assert backend.identity(ready) == {}
