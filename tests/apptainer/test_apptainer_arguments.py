"""What nb-apptainer asks the engine for: sources, definition files, image plans, exec arguments, and the SIF records
checked before a start (no engine)."""
import os
import stat
from pathlib import Path

import pytest

from nbcore import ConfigError, Environment, EnvironmentSpec, UserError
from nbcore.host.config import config_from_dict
from nbcore.plugin import CapabilityMissing, Progress
from nbcore.plugin.containers import CA_TARGET, ENV_PYTHON, Mount, python_environment_recipe

pytest.importorskip("nb_apptainer", reason="nb-apptainer is not installed (pip install -e plugins/nb-apptainer)")

from nb_apptainer import (conda_fallback, docker_image, engine as engine_module, images, registry_login,  # noqa: E402
                          sif_record)
from nb_apptainer.backend import ApptainerBackend  # noqa: E402
from nb_apptainer.definition import BUILD_VARIABLES_SCRIPT, render_definition, write_build_folder  # noqa: E402
from nb_apptainer.engine import Engine  # noqa: E402
from nb_apptainer.execution import bind_option, exec_command  # noqa: E402
from nb_apptainer.images import converted_path, parse_source, plan_image  # noqa: E402
from nb_apptainer.settings import ApptainerSettings  # noqa: E402

APPTAINER = Engine("/usr/bin/apptainer", "apptainer", "1.4.5")


def environment(section=None, name="demo", base_dir="/project", path=None, **generic):
    data = dict(generic)
    if section is not None:
        data["apptainer"] = section
    spec = EnvironmentSpec.from_dict(data, base_dir=base_dir)
    backend = ApptainerBackend()
    return Environment(name, spec, "apptainer", spec.identity("apptainer", backend.identity(spec)),
                       Path(path or "/nowhere") / name)


def plan(env):
    return plan_image(env, ApptainerSettings.from_spec(env.spec))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NBCORE_APPTAINER_CACHE", raising=False)
    monkeypatch.delenv("NBCORE_APPTAINER_BASE_IMAGE", raising=False)
    monkeypatch.delenv("NBCORE_REGISTRY", raising=False)
    monkeypatch.delenv("NBCORE_REGISTRY_PULL", raising=False)


@pytest.mark.parametrize("text, uri, scheme, path", [
    ("docker://python:3.11-slim", "docker://python:3.11-slim", "docker", None),
    ("docker-daemon:local/img:1", "docker-daemon://local/img:1", "docker-daemon", None),
    ("docker-daemon://local/img:1", "docker-daemon://local/img:1", "docker-daemon", None),
    ("docker-archive:images/x.tar", "docker-archive:///project/images/x.tar", "docker-archive", "/project/images/x.tar"),
    ("docker-archive:///data/x.tar", "docker-archive:///data/x.tar", "docker-archive", "/data/x.tar"),
    ("oras://ghcr.io/o/i:1", "oras://ghcr.io/o/i:1", "oras", None),
    ("images/base.sif", "/project/images/base.sif", None, "/project/images/base.sif"),
    ("/srv/sandbox", "/srv/sandbox", None, "/srv/sandbox"),
])
def test_image_sources_are_recognised_and_local_paths_resolved_against_the_config_folder(text, uri, scheme, path):
    source = parse_source(text, "/project")
    assert (source.uri, source.scheme, source.path) == (uri, scheme, path)
    assert source.runs_in_place == (scheme is None)


def test_local_image_content_is_part_of_the_environment_hash(tmp_path):
    image = tmp_path / "base.sif"
    image.write_bytes(b"one")
    first = environment({"image": str(image)})
    image.write_bytes(b"other content")
    assert environment({"image": str(image)}).spec_hash != first.spec_hash


def test_ready_images_run_in_place_or_from_a_cached_sif_named_by_source(tmp_path, monkeypatch):
    assert plan(environment({"image": "/srv/base.sif"})).image == "/srv/base.sif"
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "shared"))
    daemon = plan(environment({"image": "docker-daemon://local/img:1"}))
    assert Path(daemon.image).parent == tmp_path / "shared" and daemon.image.endswith(".sif")
    assert daemon.image == str(converted_path(parse_source("docker-daemon://local/img:1", None)))
    assert daemon.image != plan(environment({"image": "docker-daemon://local/img:2"})).image
    assert daemon.python == "python3" and not daemon.built


def test_specs_that_install_build_a_sif_named_by_spec_and_definition(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("one CA")
    env = environment({"image": "/srv/base.sif", "ca_bundle": str(ca)}, packages=["numpy"])
    built = plan(env)
    assert built.built and built.python == ENV_PYTHON
    assert Path(built.image).parent == env.path, "the built SIF goes with the environment"
    assert plan(env).image == built.image
    ca.write_text("another CA")
    assert plan(env).image != built.image, "the CA bundle's content changes what is built"
    other_spec = environment({"image": "/srv/base.sif", "ca_bundle": str(ca)}, packages=["scipy"])
    assert Path(plan(other_spec).image).name != Path(plan(env).image).name


def test_remove_deletes_the_built_sif_with_the_environment_and_never_a_ready_or_cached_image(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "cache"))
    ready = tmp_path / "ready.sif"
    ready.write_bytes(b"sif")
    env = environment({"image": "docker-archive://%s" % ready}, packages=["numpy"], path=tmp_path / "envs")
    built = plan(env)
    for image in (built.image, built.local):
        Path(image).parent.mkdir(parents=True, exist_ok=True)
        Path(image).write_bytes(b"sif")
    ApptainerBackend().remove(env)
    assert not Path(built.image).exists() and not env.path.exists()
    assert ready.exists() and Path(built.local).exists()


def test_definition_keeps_build_only_variables_out_of_the_image_and_its_text(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    spec = EnvironmentSpec.from_dict({"python": "3.11", "packages": ["numpy"], "install_script": "echo hi"})
    recipe = python_environment_recipe(spec, "docker://x", "python3", str(ca), "apt-get install -y git")
    definition = render_definition(recipe, "/srv/base.sif")
    assert definition.startswith("# generated by nb-apptainer\nBootstrap: localimage\nFrom: /srv/base.sif\n")
    files = definition.split("%files\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "    files/etc/nbcore/ca-certificates.crt %s" % CA_TARGET in files
    assert "    files%s %s" % (BUILD_VARIABLES_SCRIPT, BUILD_VARIABLES_SCRIPT) in files
    environment_section = definition.split("%environment\n", 1)[1].split("\n\n", 1)[0]
    assert 'export VIRTUAL_ENV="/opt/nbcore-env"' in environment_section and "PIP_CERT" not in environment_section
    post = definition.split("%post\n", 1)[1].splitlines()
    assert post[:2] == ["    set -e", "    set -a; . %s; set +a" % BUILD_VARIABLES_SCRIPT]
    assert post[-1] == "    rm -f %s" % BUILD_VARIABLES_SCRIPT
    assert "    /opt/nbcore-env/bin/python -m pip install --no-cache-dir --disable-pip-version-check numpy" in post
    assert any("build_script.sh" in line for line in post) and any("install_script.sh" in line for line in post)
    assert str(tmp_path) not in definition

    folder = tmp_path / "build"
    write_build_folder(recipe, folder, {"HTTPS_PROXY": "http://user:pa ss@proxy:3128"})
    script = (folder / "files" / BUILD_VARIABLES_SCRIPT.lstrip("/")).read_text()
    assert "HTTPS_PROXY='http://user:pa ss@proxy:3128'\n" in script and "PIP_CERT=%s\n" % CA_TARGET in script
    assert "proxy:3128" not in definition
    assert (folder / "files/etc/nbcore/ca-certificates.crt").read_text() == "CA"
    assert stat.S_IMODE((folder / "files/nbcore-build/install_script.sh").stat().st_mode) == 0o755


def exec_argv(tmp_path, section=None, variables=None, **kwargs):
    env = environment(section or {}, path=tmp_path / "envs")
    env.path.mkdir(parents=True, exist_ok=True)
    settings = ApptainerSettings.from_spec(env.spec)
    worker = tmp_path / "worker"
    worker.mkdir(exist_ok=True)
    kwargs.setdefault("is_sif", False)
    return exec_command(APPTAINER, settings, "/srv/image.sif", ["python3", "-m", "nbcore.worker"],
                        variables or {}, tmp_path, env.path, worker, **kwargs)


def test_exec_runs_with_a_clean_environment_the_cwd_and_the_worker_code(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("SOME_HOST_VARIABLE", "stays out")
    command = exec_argv(tmp_path, {"env": {"MY_SETTING": "1"}}, {"NBCORE_WORKER_SECRET": "s3cret"})
    argv = command.argv
    assert argv[:5] == ["/usr/bin/apptainer", "--quiet", "exec", "--cleanenv", "--no-eval"]
    assert argv[-4:] == ["/srv/image.sif", "python3", "-m", "nbcore.worker"]
    assert argv[argv.index("--pwd") + 1] == str(tmp_path) and command.cwd == str(tmp_path)
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind"]
    assert "%s:%s" % (tmp_path, tmp_path) in binds
    assert "%s:%s:ro" % (tmp_path / "worker", tmp_path / "worker") in binds
    bytecode = tmp_path / "envs" / "demo" / "worker-bytecode"
    assert "%s:%s" % (bytecode, bytecode) in binds and command.env["APPTAINERENV_NBCORE_WORKER_PYCACHE"] == str(bytecode)
    assert command.env["APPTAINERENV_NBCORE_WORKER_SECRET"] == "s3cret"
    assert command.env["APPTAINERENV_OMP_NUM_THREADS"] == "2" and command.env["APPTAINERENV_MY_SETTING"] == "1"
    assert "APPTAINERENV_SOME_HOST_VARIABLE" not in command.env
    assert not any("s3cret" in arg for arg in argv), "variable values stay out of the process list"


def test_singularity_gets_its_own_variable_prefix(tmp_path):
    command = exec_command(Engine("/usr/bin/singularity", "singularity", "4.1.0"), ApptainerSettings.from_spec(
        EnvironmentSpec()), "/srv/sandbox", ["true"], {"A": "1"}, None, tmp_path, is_sif=False)
    assert command.env["SINGULARITYENV_A"] == "1" and "--pwd" not in command.argv


@pytest.mark.parametrize("home, expected", [
    ("private", lambda env_path: ["--home", "%s:%s" % (env_path / "home", os.path.expanduser("~"))]),
    ("none", lambda env_path: ["--no-home"]),
    ("host", lambda env_path: []),
])
def test_home_is_a_private_empty_folder_unless_asked(tmp_path, home, expected):
    argv = exec_argv(tmp_path, {"home": home}).argv
    options = argv[argv.index("--no-eval") + 1:]
    wanted = expected(tmp_path / "envs" / "demo")
    home_options = [a for i, a in enumerate(options) if a in ("--home", "--no-home")
                    or (i and options[i - 1] == "--home")]
    assert home_options == wanted


def test_gpus_mounts_ca_bundle_unsquash_and_extra_options(tmp_path, monkeypatch):
    import nb_apptainer.settings as settings_module

    monkeypatch.setattr(settings_module, "nvidia_gpus_present", lambda: True)
    ca = tmp_path / "ca.crt"
    ca.write_text("CA")
    data = tmp_path / "data"
    data.mkdir()
    argv = exec_argv(tmp_path, {"mounts": ["%s:/data:ro" % data], "ca_bundle": str(ca), "exec_options": ["--contain"]},
                     is_sif=False).argv
    assert "--nv" in argv and "--contain" in argv and "--unsquash" not in argv
    assert "%s:/data:ro" % data in argv and "%s:%s:ro" % (ca, CA_TARGET) in argv
    assert "--nv" not in exec_argv(tmp_path, {"gpus": False}).argv
    monkeypatch.setattr("nb_apptainer.execution.check_fuse", lambda: pytest.fail("unsquash needs no FUSE"))
    assert "--unsquash" in exec_argv(tmp_path, {"unsquash": True}, is_sif=True).argv


def test_paths_with_colons_or_commas_are_bound_with_mount():
    assert bind_option(Mount("/a", "/b", True)) == ["--bind", "/a:/b:ro"]
    assert bind_option(Mount("/data/x:y,z", "/data/x:y,z")) == [
        "--mount", 'type=bind,"source=/data/x:y,z","destination=/data/x:y,z"']


def test_apptainer_section_is_validated_by_its_schema():
    with pytest.raises(ConfigError, match="imag"):
        config_from_dict({"environments": {"x": {"apptainer": {"imag": "docker://x"}}}},
                         {"apptainer": ApptainerBackend()})
    with pytest.raises(ConfigError, match="home"):
        config_from_dict({"environments": {"x": {"apptainer": {"home": "mine"}}}}, {"apptainer": ApptainerBackend()})


def fake_engine(folder, name, version_line):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\necho '%s'\n" % version_line)
    path.chmod(0o755)
    return path


@pytest.fixture
def clear_probe(tmp_path, monkeypatch):
    """A process that has not looked for the engine yet, with a home of its own (where versions are remembered)."""
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home"))
    engine_module._probe.cache_clear()
    yield
    engine_module._probe.cache_clear()


def test_spython_finds_apptainer_on_a_host_without_singularity(tmp_path, monkeypatch, clear_probe):
    apptainer = fake_engine(tmp_path / "bin", "apptainer", "apptainer version 1.4.5")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert engine_module.unavailable_reason() is None
    assert engine_module.require_engine() == Engine(str(apptainer), "apptainer", "1.4.5")
    assert os.environ["PATH"] == str(tmp_path / "bin"), "PATH is restored after spython ran"


def test_apptainer_is_preferred_to_singularity(tmp_path, monkeypatch, clear_probe):
    fake_engine(tmp_path / "bin", "singularity", "singularity-ce version 4.1.0")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert engine_module.require_engine().flavour == "singularity"
    apptainer = fake_engine(tmp_path / "bin", "apptainer", "apptainer version 1.4.5")
    assert engine_module.require_engine().executable == str(apptainer)


def test_the_engine_version_is_remembered_until_its_executable_changes(tmp_path, monkeypatch, clear_probe):
    apptainer = fake_engine(tmp_path / "bin", "apptainer", "apptainer version 1.4.5")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    asked = []
    ask = engine_module._ask_version
    monkeypatch.setattr(engine_module, "_ask_version", lambda executable: asked.append(executable) or ask(executable))
    assert engine_module.require_engine().version == "1.4.5"
    engine_module._probe.cache_clear()  # the next process
    assert engine_module.require_engine() == Engine(str(apptainer), "apptainer", "1.4.5")
    assert asked == [str(apptainer)], "the second start asks nothing"
    fake_engine(tmp_path / "bin", "apptainer", "apptainer version 1.5.0")  # upgraded in place, same size
    engine_module._probe.cache_clear()
    assert engine_module.require_engine().version == "1.5.0"
    assert len(asked) == 2


def test_unavailable_reasons_name_the_fix(tmp_path, monkeypatch, clear_probe):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "neither apptainer nor singularity is on PATH" in engine_module.unavailable_reason()
    fake_engine(tmp_path / "broken", "apptainer", "garbage")
    monkeypatch.setenv("PATH", str(tmp_path / "broken"))
    reason = engine_module.unavailable_reason()
    assert "does not run" in reason and "'garbage'" in reason


def test_conda_spec_without_image_runs_on_the_fallback_image_with_a_prefix_of_its_own(monkeypatch):
    monkeypatch.setenv("NBCORE_APPTAINER_FALLBACK_IMAGE", "/srv/generic.sif")
    env = environment({}, conda={"dependencies": ["numpy"]})
    fallback = plan(env)
    assert fallback.image == "/srv/generic.sif" and fallback.conda_prefix == env.path / "conda-prefix"
    assert fallback.python == str(env.path / "conda-prefix" / "bin" / "python") and not fallback.built


def test_conda_spec_with_an_image_runs_it_until_it_could_not_be_had(tmp_path):
    env = environment({"image": "docker://example/method:1", "fallback_image": "/srv/generic.sif"},
                      conda={"dependencies": ["numpy"]}, path=tmp_path)
    assert plan(env).conda_prefix is None and plan(env).source.uri == "docker://example/method:1"
    env.path.mkdir()
    conda_fallback.mark(env, "image docker://example/method:1 could not be converted")
    assert plan(env).conda_prefix == env.path / "conda-prefix" and plan(env).image == "/srv/generic.sif"
    no_conda = environment({"image": "docker://example/method:1"}, path=tmp_path)
    assert not conda_fallback.wanted(no_conda.spec) and plan(no_conda).conda_prefix is None


def test_conda_section_and_fallback_image_are_part_of_the_hash_of_conda_specs(monkeypatch):
    first = environment({}, conda={"dependencies": ["numpy"]}).spec_hash
    assert environment({}, conda={"dependencies": ["scipy"]}).spec_hash != first
    monkeypatch.setenv("NBCORE_APPTAINER_FALLBACK_IMAGE", "docker://other/generic:2")
    assert environment({}, conda={"dependencies": ["numpy"]}).spec_hash != first
    assert environment({}).spec_hash == environment({}).spec_hash


def test_conda_fallback_without_nb_conda_is_a_user_error_naming_it(monkeypatch, fresh_registry):
    monkeypatch.setenv("NBCORE_DISABLE_PLUGINS", "nb-conda")
    fresh_registry()
    with pytest.raises(CapabilityMissing, match="nb-conda"):
        conda_fallback.builder()


def test_the_registry_and_nb_docker_s_image_hash_are_part_of_the_hash_of_specs_without_an_image(monkeypatch):
    pytest.importorskip("nb_docker", reason="nb-docker is not installed (pip install -e plugins/nb-docker)")
    spec = {"python": "3.11", "packages": ["numpy"]}
    plain = environment({}, **spec).spec_hash
    monkeypatch.setenv("NBCORE_REGISTRY", "registry.example/team")
    published = environment({}, **spec).spec_hash
    assert published != plain, "installs pull from the registry now: another environment"
    assert environment({}, **dict(spec, docker={"build_script": "true"})).spec_hash != published
    assert environment({"image": "/srv/own.sif"}, **spec).spec_hash == \
        environment({"image": "/srv/own.sif"}, **spec).spec_hash
    monkeypatch.setenv("NBCORE_REGISTRY", "other.example/team")
    assert environment({}, **spec).spec_hash not in (plain, published)
    monkeypatch.setenv("NBCORE_REGISTRY_PULL", "never")
    assert environment({}, **spec).spec_hash == plain, "never asks no registry: the environment made without one"
    named = environment({"image": "/srv/own.sif"}, **spec).spec_hash
    monkeypatch.delenv("NBCORE_REGISTRY_PULL")
    assert environment({"image": "/srv/own.sif"}, **spec).spec_hash == named, "a named image is never looked up"


def test_a_recorded_docker_image_is_what_the_environment_runs_even_with_a_conda_section(tmp_path):
    env = environment({}, path=tmp_path, conda={"dependencies": ["numpy"]}, packages=["scipy"])
    assert plan(env).conda_prefix is not None
    env.path.mkdir()
    docker_image.record(env, "docker://registry.example/nbcore/demo:0123", "/opt/nbcore-env/bin/python")
    chosen = plan(env)
    assert chosen.conda_prefix is None and not chosen.built and chosen.python == "/opt/nbcore-env/bin/python"
    assert chosen.image == str(converted_path(parse_source("docker://registry.example/nbcore/demo:0123", None)))


@pytest.mark.parametrize("reason, absent, hint", [
    ("conveyor failed to get: GET http://127.0.0.1:5055/v2/t/x/manifests/1: MANIFEST_UNKNOWN: manifest unknown; "
     "map[Tag:1]", True, None),
    ("reading manifest 1 in r.example/t/x: name unknown: repository name not known to registry", True, None),
    ("conveyor failed to get: GET http://127.0.0.1:5056/v2/x/manifests/3.11: UNAUTHORIZED: authentication required",
     False, "the registry needs a login and none is set for 127.0.0.1:5056: run docker login 127.0.0.1:5056, or "
            "apptainer registry login --username USER docker://127.0.0.1:5056"),
    ('conveyor failed to get: Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
     False, "cannot reach the registry (connection refused)"),
])
def test_the_engine_s_words_tell_an_image_the_registry_lacks_from_a_refusal(reason, absent, hint):
    """The engine's words as Apptainer 1.4.5 says them (a real run against the loopback registries)."""
    assert docker_image.is_absent(reason) is absent
    explained = docker_image.explain(reason, "127.0.0.1:5056/team/nbcore/demo:0123")
    assert explained.startswith(hint or reason) and reason in explained


LOGIN_REFUSAL = "conveyor failed to get: GET http://127.0.0.1:5056/v2/x/manifests/1: UNAUTHORIZED: authentication required"


@pytest.mark.parametrize("login, hint", [
    (None, "the registry needs a login and none is set for 127.0.0.1:5056"),
    (registry_login.Login(None, None), "the registry needs a login and none is set for 127.0.0.1:5056"),
    (registry_login.Login("/home/u/.docker/config.json", None),
     "the registry refused the credentials for 127.0.0.1:5056 from /home/u/.docker/config.json: log in again"),
    (registry_login.Login("APPTAINER_DOCKER_USERNAME", None),
     "the registry refused the credentials for 127.0.0.1:5056 from APPTAINER_DOCKER_USERNAME: check "
     "APPTAINER_DOCKER_USERNAME and APPTAINER_DOCKER_PASSWORD"),
])
def test_a_missing_login_and_a_refused_one_are_told_apart_by_the_login_the_engine_offered(login, hint):
    """The registry says UNAUTHORIZED for both; which one it is comes from the login the conversion offered."""
    explained = docker_image.explain(LOGIN_REFUSAL, "127.0.0.1:5056/team/nbcore/demo:0123", login)
    assert explained.startswith(hint) and explained.endswith("[%s]" % LOGIN_REFUSAL)


@pytest.mark.parametrize("name, host", [
    ("127.0.0.1:5056/team/nbcore/demo:1", "127.0.0.1:5056"), ("docker://ghcr.io/o/x:1", "ghcr.io"),
    ("localhost/x", "localhost"), ("docker://python:3.11-slim", "docker.io"), ("team/x:1", "docker.io"),
    ("index.docker.io/team/x", "docker.io"),
])
def test_the_registry_of_an_image_name(name, host):
    assert registry_login.registry_host(name) == host


def write_login(path, host):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"auths": {"%s": {"auth": "dTpw"}}}' % host)


def test_the_docker_config_s_login_is_passed_as_authfile_only_when_the_engine_would_not_find_one(tmp_path,
                                                                                                   monkeypatch):
    """Apptainer reads ~/.apptainer/docker-config.json when it exists, else ~/.docker/config.json, never
    DOCKER_CONFIG; the APPTAINER_DOCKER_* variables come before any file."""
    uri = "docker://127.0.0.1:5056/team/nbcore/demo:1"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("DOCKER_CONFIG",) + registry_login.USERNAME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert registry_login.login_for("apptainer", uri) == registry_login.Login(None, None)

    home_docker = tmp_path / "home" / ".docker" / "config.json"
    write_login(home_docker, "http://127.0.0.1:5056")
    assert registry_login.login_for("apptainer", uri) == registry_login.Login(str(home_docker), None)

    own = tmp_path / "home" / ".apptainer" / "docker-config.json"
    write_login(own, "other.example")  # the engine now reads this file alone, which has no login for the registry
    assert registry_login.login_for("apptainer", uri) == registry_login.Login(str(home_docker), str(home_docker))
    assert registry_login.login_for("singularity", uri) == registry_login.Login(str(home_docker), None)

    folder = tmp_path / "ci-docker"
    write_login(folder / "config.json", "127.0.0.1:5056")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    assert registry_login.login_for("apptainer", uri).authfile == str(folder / "config.json")
    write_login(own, "127.0.0.1:5056")
    assert registry_login.login_for("apptainer", uri) == registry_login.Login(str(own), None)
    monkeypatch.setenv("APPTAINER_DOCKER_USERNAME", "u")
    assert registry_login.login_for("apptainer", uri) == registry_login.Login("APPTAINER_DOCKER_USERNAME", None)


def test_a_docker_conversion_gets_the_authfile_before_its_target_and_other_sources_none(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "ci-docker"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in registry_login.USERNAME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    write_login(tmp_path / "ci-docker" / "config.json", "127.0.0.1:5056")
    calls = []
    monkeypatch.setattr(images, "_build_into", lambda engine, target, *args, **kwargs:
                        calls.append(kwargs["options"]) or target.write_bytes(b"converted"))
    for text in ("docker://127.0.0.1:5056/team/x:1", "docker://127.0.0.1:5055/team/x:1", "oras://127.0.0.1:5056/x:1"):
        images.ensure_local(APPTAINER, images.ready_plan(parse_source(text, None), "python3"), None)
    assert calls == [["--authfile", str(tmp_path / "ci-docker" / "config.json")], [], []]


def test_an_image_cache_on_a_nearly_full_home_gets_a_warning_naming_the_variables(tmp_path, monkeypatch):
    from nb_apptainer import images

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(images.shutil, "disk_usage", lambda path: shutil_usage(free=2 * 10 ** 9))
    warning = images._small_home_cache(tmp_path / ".cache" / "nbcore")
    assert "in your home, which has 2.0 GB free" in warning and "NBCORE_APPTAINER_CACHE" in warning
    assert "APPTAINER_CACHEDIR" in warning
    assert images._small_home_cache(Path("/scratch/cache")) is None
    monkeypatch.setattr(images.shutil, "disk_usage", lambda path: shutil_usage(free=50 * 10 ** 9))
    assert images._small_home_cache(tmp_path / ".cache" / "nbcore") is None


def shutil_usage(free):
    import collections

    return collections.namedtuple("usage", "total used free")(100 * 10 ** 9, 0, free)


def test_doctor_lists_the_image_and_layer_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "images"))
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "layers"))
    assert ApptainerBackend().caches() == {"apptainer images": tmp_path / "images",
                                           "apptainer layers": tmp_path / "layers"}


def test_the_plan_is_derived_once_per_open_and_read_by_every_hook(tmp_path, monkeypatch):
    import nb_apptainer.plan

    derived = []
    monkeypatch.setattr(nb_apptainer.plan, "plan_image", lambda env, settings: derived.append(env) or plan(env))
    monkeypatch.setattr("nb_apptainer.backend.require_engine", lambda: APPTAINER)
    backend = ApptainerBackend()
    env = environment({"image": str(tmp_path / "sandbox")}, path=tmp_path)
    (tmp_path / "sandbox").mkdir()
    assert backend.is_installed(env) and backend.worker_python(env) == "python3"
    assert backend.command(env, ["true"]).argv[-2:] == [str(tmp_path / "sandbox"), "true"]
    assert backend.shell_command(env, ["true"]).argv[-1] == "true"
    assert derived == [env]
    backend.worker_python(environment({"image": str(tmp_path / "sandbox")}, path=tmp_path))
    assert len(derived) == 2, "another open derives its own"


def test_a_sif_is_hashed_again_only_when_its_stamp_changes(tmp_path, monkeypatch):
    sif, record = tmp_path / "image.sif", tmp_path / "record.json"
    sif.write_bytes(b"SIF content")
    hashed = []
    real = sif_record.sha256_of
    monkeypatch.setattr(sif_record, "sha256_of", lambda handle: hashed.append(1) or real(handle))
    sif_record.record(record, str(sif))
    assert sif_record.check(record, str(sif)) is None and len(hashed) == 1, "an unchanged stamp needs no hash"
    os.utime(sif, ns=(0, 10 ** 18))
    assert sif_record.check(record, str(sif)) is None and len(hashed) == 2, "a new time: hashed, the same content"
    assert sif_record.check(record, str(sif)) is None and len(hashed) == 2, "the new stamp was recorded"
    assert stat.S_IMODE(os.stat(record).st_mode) == sif_record.RECORD_MODE


def test_content_written_back_under_the_old_size_and_time_is_a_mismatch(tmp_path):
    sif, record = tmp_path / "image.sif", tmp_path / "record.json"
    sif.write_bytes(b"SIF content")
    before = os.stat(sif)
    recorded = sif_record.record(record, str(sif))
    sif.write_bytes(b"SIF CONTENT")
    os.utime(sif, ns=(before.st_atime_ns, before.st_mtime_ns))
    mismatch = sif_record.check(record, str(sif))
    assert mismatch is not None and mismatch.recorded == recorded and mismatch.found != recorded


def test_a_sif_that_changed_since_the_install_is_refused_in_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("nb_apptainer.backend.require_engine", lambda: APPTAINER)
    base = tmp_path / "base.sif"
    base.write_bytes(b"base")
    built = environment({"image": str(base)}, packages=["numpy"], path=tmp_path / "envs")
    in_place = environment({"image": str(base)}, name="as-is", path=tmp_path / "envs")
    for env in (built, in_place):
        image = Path(plan(env).image)
        env.path.mkdir(parents=True, exist_ok=True)
        if not image.exists():
            image.write_bytes(b"built")
        sif_record.record(env.path / sif_record.ENVIRONMENT_RECORD, str(image))
        ApptainerBackend().command(env, ["true"])
        with open(image, "ab") as handle:
            handle.write(b"changed")
        with pytest.raises(UserError) as raised:
            ApptainerBackend().command(env, ["true"])
        message = str(raised.value)
        assert "\n" not in message and message.startswith("the image %s of environment %s changed since it was "
                                                          "installed (sha256 " % (image, env.name))
        assert message.endswith("reinstall it with nbcore install %s --force" % env.name)
    assert "if you changed it yourself, reinstall it" in message, "the user's own SIF, run in place"


def test_a_cached_sif_that_changed_since_its_conversion_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_APPTAINER_CACHE", str(tmp_path / "cache"))
    ready = images.ready_plan(parse_source("docker-daemon://local/img:1", None), "python3")
    converted = []

    def convert(engine, target, arguments, progress, step, **options):
        converted.append(arguments)
        target.write_bytes(b"converted %d" % len(converted))

    monkeypatch.setattr(images, "_build_into", convert)
    progress = Progress(quiet=True)
    steps = []
    monkeypatch.setattr(progress, "step", steps.append)
    images.ensure_local(APPTAINER, ready, progress)
    images.ensure_local(APPTAINER, ready, progress)
    assert converted == [["docker-daemon://local/img:1"]], "an intact cached SIF is reused"
    with open(ready.local, "ab") as handle:
        handle.write(b"changed")
    images.ensure_local(APPTAINER, ready, progress)
    assert len(converted) == 2 and Path(ready.local).read_bytes() == b"converted 2"
    assert any(s.startswith("the cached image %s changed since it was converted" % ready.local) for s in steps), steps
    assert sif_record.check(sif_record.cache_record(ready.local), ready.local) is None
