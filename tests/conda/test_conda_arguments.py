"""What nb-conda asks its engines for: the spec section, environment.yml, site settings, frontend command lines,
engine choice, recorded activation (no engine runs here; tests/conda/test_conda_engine.py runs the real one)."""
import os
import sys
from pathlib import Path

import pytest

from nbcore.host.config import config_from_dict
from nbcore.plugin import ConfigError, EnvironmentSpec

from nb_conda import activation, embedded, engines, settings
from nb_conda.backend import CondaBackend
from nb_conda.engines import Frontend, choose_engine

from nbtest import write

HOST = "%d.%d" % sys.version_info[:2]


def spec_of(tmp_path, section=None, **generic):
    data = dict(generic)
    if section is not None:
        data["conda"] = section
    return EnvironmentSpec.from_dict(data, source="nbcore.yaml:3", base_dir=str(tmp_path))


def test_section_is_validated_by_the_schema():
    backends = {"conda": CondaBackend()}
    config_from_dict({"environments": {"e": {"conda": {"dependencies": ["numpy", {"pip": ["rich"]}],
                                                       "channels": ["conda-forge"], "pip": ["tqdm"],
                                                       "variables": {"A": "1"}, "environment_file": "env.yml"}}}},
                     backends)
    with pytest.raises(ConfigError, match="conda.dependenciess"):
        config_from_dict({"environments": {"e": {"conda": {"dependenciess": ["numpy"]}}}}, backends)
    with pytest.raises(ConfigError, match="dependencies"):
        config_from_dict({"environments": {"e": {"conda": {"dependencies": [{"npm": ["x"]}]}}}}, backends)


def test_generic_keys_alone_give_the_hosts_python_from_conda_forge(tmp_path):
    request = settings.conda_request(spec_of(tmp_path))
    assert request.channels == ("conda-forge",)
    assert request.specs == ("python %s.*" % HOST,)
    assert request.pip == () and request.lock_file is None


def test_python_and_pip_packages_are_added(tmp_path):
    request = settings.conda_request(spec_of(tmp_path, {"dependencies": ["numpy >=1.24"], "pip": ["rich"]},
                                             python="3.9", packages=["tqdm"], install_script="true"))
    assert request.specs == ("numpy >=1.24", "python 3.9.*", "pip")
    assert request.pip == ("rich", "tqdm")
    assert request.install_script == "true" and request.base_dir == tmp_path


def test_a_dependency_naming_python_or_pip_is_not_doubled(tmp_path):
    request = settings.conda_request(spec_of(tmp_path, {"dependencies": ["conda-forge::python=3.10", "pip>=23"],
                                                        "pip": ["rich"]}))
    assert request.specs == ("conda-forge::python=3.10", "pip>=23")


def test_environment_yml_is_accepted_as_it_is(tmp_path):
    write(tmp_path / "environment.yml", """
        name: ignored-name
        channels: [my-channel, conda-forge]
        dependencies:
          - python=3.10
          - numpy
          - pip:
              - rich==13.0
        variables:
          FROM_FILE: "1"
    """)
    request = settings.conda_request(spec_of(tmp_path, {"environment_file": "environment.yml",
                                                        "dependencies": ["scipy"], "variables": {"FROM_SPEC": "2"}}))
    assert request.channels == ("my-channel", "conda-forge")
    assert request.specs == ("python=3.10", "numpy", "scipy", "pip")
    assert request.pip == ("rich==13.0",)
    assert request.variables == {"FROM_FILE": "1", "FROM_SPEC": "2"}


def test_section_channels_win_over_the_files(tmp_path):
    write(tmp_path / "environment.yml", "channels: [from-file]\ndependencies: [numpy]\n")
    request = settings.conda_request(spec_of(tmp_path, {"environment_file": "environment.yml", "channels": ["mine"]}))
    assert request.channels == ("mine",)


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("dependencies: [numpy\n", "cannot read"),
    ("- numpy\n", "not a mapping"),
    ("dependencies: [numpy]\nbuild: {}\n", "unknown keys build"),
    ("dependencies: [{conda: [x]}]\n", "a dependency must be a string or {pip: \\[...\\]}"),
])
def test_a_bad_environment_file_is_a_one_line_config_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "environment.yml").write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        settings.conda_request(spec_of(tmp_path, {"environment_file": "environment.yml"}))
    assert "\n" not in str(raised.value) and "conda.environment_file" in str(raised.value)


def test_identity_covers_the_content_of_referenced_files(tmp_path):
    write(tmp_path / "environment.yml", "dependencies: [numpy]\n")
    write(tmp_path / "env.lock", "version: 6\n")
    spec = spec_of(tmp_path, {"environment_file": "environment.yml", "lock_file": "env.lock"}, python="3.11")
    first = CondaBackend().identity(spec)
    assert set(first) == {"environment_file", "lock_file"}
    assert CondaBackend().identity(spec) == first
    write(tmp_path / "environment.yml", "dependencies: [scipy]\n")
    second = CondaBackend().identity(spec)
    assert second["environment_file"] != first["environment_file"] and second["lock_file"] == first["lock_file"]
    assert spec.identity("conda", first) != spec.identity("conda", second)


def test_identity_names_the_default_python(tmp_path):
    assert CondaBackend().identity(spec_of(tmp_path)) == {"default_python": HOST}
    assert CondaBackend().identity(spec_of(tmp_path, python="3.9")) == {}


def test_channel_alias_applies_to_names_only(tmp_path, monkeypatch):
    request = settings.CondaRequest(channels=("conda-forge", "https://example.org/ch", "./local", "/abs/ch"),
                                    specs=(), base_dir=tmp_path)
    monkeypatch.delenv("NBCORE_CONDA_CHANNEL_ALIAS", raising=False)
    monkeypatch.delenv("CONDA_CHANNEL_ALIAS", raising=False)
    assert settings.channel_urls(request) == ["conda-forge", "https://example.org/ch", (tmp_path / "local").as_uri(),
                                              "file:///abs/ch"]
    monkeypatch.setenv("CONDA_CHANNEL_ALIAS", "https://conda-proxy.example.org/a")
    assert settings.channel_urls(request)[0] == "https://conda-proxy.example.org/a/conda-forge"
    monkeypatch.setenv("NBCORE_CONDA_CHANNEL_ALIAS", "file:///srv/channels/")
    assert settings.channel_urls(request)[:2] == ["file:///srv/channels/conda-forge", "https://example.org/ch"]


def test_package_cache_follows_conda_pkgs_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path))
    monkeypatch.delenv("CONDA_PKGS_DIRS", raising=False)
    assert settings.package_cache() == tmp_path / "conda" / "pkgs"
    monkeypatch.setenv("CONDA_PKGS_DIRS", "/scratch/pkgs,/other")
    assert settings.package_cache() == Path("/scratch/pkgs")


def test_solve_timeout_setting(monkeypatch):
    monkeypatch.delenv("NBCORE_CONDA_SOLVE_TIMEOUT", raising=False)
    assert settings.solve_timeout() == settings.DEFAULT_SOLVE_TIMEOUT
    monkeypatch.setenv("NBCORE_CONDA_SOLVE_TIMEOUT", "2.5")
    assert settings.solve_timeout() == 2.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("NBCORE_CONDA_SOLVE_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="NBCORE_CONDA_SOLVE_TIMEOUT"):
            settings.solve_timeout()


@pytest.mark.parametrize("path, kind", [
    ("/opt/micromamba/bin/micromamba", "micromamba"), ("/usr/bin/mamba", "mamba"),
    ("/home/u/miniforge3/condabin/conda", "conda"), ("/usr/bin/python3", None),
])
def test_frontend_kind_from_the_executable_name(path, kind):
    assert engines.frontend_kind(path) == kind


@pytest.mark.parametrize("kind", ["micromamba", "mamba", "conda"])
def test_frontend_create_command_line(kind):
    frontend = Frontend(kind, "/x/bin/" + kind)
    argv = frontend.create_argv(Path("/envs/p"), ["https://mirror.example/conda-forge", "bioconda"],
                                ["python 3.11.*", "numpy>=1.24"])
    assert argv == ["/x/bin/" + kind, "create", "--yes", "--prefix", "/envs/p", "--override-channels",
                    "--channel", "https://mirror.example/conda-forge", "--channel", "bioconda",
                    "python 3.11.*", "numpy>=1.24"]


@pytest.mark.parametrize("kind", ["micromamba", "mamba", "conda"])
def test_frontend_explicit_install_command_line(kind):
    argv = Frontend(kind, "/x/" + kind).explicit_argv(Path("/envs/p"), Path("/tmp/explicit.txt"))
    assert argv == ["/x/" + kind, "create", "--yes", "--prefix", "/envs/p", "--file", "/tmp/explicit.txt"]


def test_auto_engine_prefers_micromamba_then_mamba_then_embedded_and_conda_last():
    every = {"micromamba": "/a/micromamba", "mamba": "/a/mamba", "conda": "/a/conda"}
    assert choose_engine("auto", every, True) == Frontend("micromamba", "/a/micromamba")
    assert choose_engine("auto", {"mamba": "/a/mamba", "conda": "/a/conda"}, True) == Frontend("mamba", "/a/mamba")
    assert isinstance(choose_engine("auto", {"conda": "/a/conda"}, True), embedded.EmbeddedEngine)
    assert choose_engine("auto", {"conda": "/a/conda"}, False) == Frontend("conda", "/a/conda")
    with pytest.raises(ConfigError, match="no conda engine: pip install py-rattler"):
        choose_engine("auto", {}, False)


def test_explicit_engine_choice():
    assert isinstance(choose_engine("embedded", {"micromamba": "/a/micromamba"}, True), embedded.EmbeddedEngine)
    assert choose_engine("conda", {"micromamba": "/m", "conda": "/c"}, True) == Frontend("conda", "/c")
    with pytest.raises(ConfigError, match="NBCORE_CONDA_ENGINE=mamba, but no mamba was found"):
        choose_engine("mamba", {"conda": "/c"}, True)
    with pytest.raises(ConfigError, match="needs py-rattler"):
        choose_engine("embedded", {}, False)
    with pytest.raises(ConfigError, match="is not one of auto, embedded, micromamba, mamba, conda"):
        choose_engine("pixi", {}, True)


def test_frontends_found_through_the_variables_and_path():
    python = os.path.realpath(sys.executable)  # an executable whose name is no frontend's: ignored
    assert engines.find_frontends({"CONDA_EXE": python, "MAMBA_EXE": "/nonexistent/micromamba", "PATH": ""}) == {}


def test_activation_keeps_what_changed_around_the_old_values():
    before = {"PATH": "/usr/bin:/bin", "HOME": "/root", "GONE": "x", "SHLVL": "1", "LD_LIBRARY_PATH": "/opt/lib"}
    after = {"PATH": "/p/bin:/usr/bin:/bin", "HOME": "/root", "SHLVL": "2", "_": "/usr/bin/env",
             "CONDA_PREFIX": "/p", "LD_LIBRARY_PATH": "/p/lib:/opt/lib:/p/lib64"}
    recorded = activation.record(before, after)
    assert recorded == {"set": {"PATH": ["/p/bin:", ""], "CONDA_PREFIX": "/p",
                                "LD_LIBRARY_PATH": ["/p/lib:", ":/p/lib64"]}, "unset": ["GONE"]}
    replayed = activation.apply(recorded, {"PATH": "/home/u/bin:/usr/bin", "GONE": "y", "KEEP": "1"})
    assert replayed == {"PATH": "/p/bin:/home/u/bin:/usr/bin", "CONDA_PREFIX": "/p", "LD_LIBRARY_PATH": "/p/lib:/p/lib64",
                        "KEEP": "1"}


def test_activation_does_not_take_a_partial_match_for_the_old_value():
    recorded = activation.record({"X": "/a"}, {"X": "/ab:/a/c"})
    assert recorded["set"]["X"] == "/ab:/a/c"


def test_activation_capture_reads_env_dumps(tmp_path):
    (tmp_path / "dump").write_bytes(b"A=1\0MULTI=line1\nline2\0EMPTY=\0")
    assert activation.read_dump(tmp_path / "dump") == {"A": "1", "MULTI": "line1\nline2", "EMPTY": ""}
    argv = activation.capture_argv(Path("/p/act.sh"), Path("/p/before"), Path("/p/after"))
    assert argv[:2] == ["bash", "-c"] and argv[-3:] == ["/p/before", "/p/act.sh", "/p/after"]


def test_conda_is_tried_before_docker_and_venv():
    from nb_docker.backend import DockerBackend

    from nbcore.builtin.venv import VenvBackend

    assert CondaBackend.auto_priority > DockerBackend.auto_priority > VenvBackend.auto_priority


def test_the_embedded_engine_is_found_without_reading_package_metadata():
    """Every start checks that the backend has an engine: that must not import importlib.metadata (7 ms)."""
    import subprocess

    if embedded.rattler_version() is None:
        pytest.skip("py-rattler is not installed (Python < 3.10)")
    probe = ("import sys; from nb_conda.backend import CondaBackend; assert CondaBackend().check_available() is None; "
             "print('importlib.metadata' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], env=dict(os.environ, NBCORE_CONDA_ENGINE="auto", PATH=""),
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
    assert embedded.rattler_installed()


def test_backend_names_its_engine_or_what_to_install(monkeypatch):
    if embedded.rattler_version() is None:
        pytest.skip("py-rattler is not installed (Python < 3.10)")
    monkeypatch.setenv("NBCORE_CONDA_ENGINE", "embedded")
    backend = CondaBackend()
    assert backend.check_available() is None
    assert backend.description.endswith("engine: embedded engine (py-rattler %s)" % embedded.rattler_version())
    monkeypatch.setenv("NBCORE_CONDA_ENGINE", "micromamba")
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("MAMBA_EXE", raising=False)
    monkeypatch.delenv("CONDA_EXE", raising=False)
    assert backend.check_available() == "NBCORE_CONDA_ENGINE=micromamba, but no micromamba was found (MAMBA_EXE, " \
                                        "CONDA_EXE, PATH)"
    assert "no engine (NBCORE_CONDA_ENGINE=micromamba" in backend.description


def test_a_failing_step_quotes_only_its_own_output():
    from nb_conda.prefix import _lines_since

    assert _lines_since(["a", "b"], ["a", "b", "c", "d"]) == ["c", "d"]
    assert _lines_since(["a", "b", "c"], ["c", "d", "e"]) == ["d", "e"]  # the bounded tail dropped a and b
    assert _lines_since([], ["x"]) == ["x"] and _lines_since(["x"], ["x"]) == []


def test_doctor_shows_the_package_cache_and_its_size(tmp_path):
    import json

    from nbtest import run_nbcore

    (tmp_path / "pkgs" / "python-3.11.2-0").mkdir(parents=True)
    (tmp_path / "pkgs" / "python-3.11.2-0" / "payload").write_bytes(b"x" * 123456)
    variables = {"CONDA_PKGS_DIRS": str(tmp_path / "pkgs"), "NBCORE_HOME": str(tmp_path / "home")}
    report = json.loads(run_nbcore("doctor", "--json", cwd=tmp_path, env=variables).stdout)
    caches = report["backends"]["conda"]["caches"]
    assert caches["conda packages"] == {"path": str(tmp_path / "pkgs"), "bytes": 123456}
    assert caches["conda repodata"]["path"] == str(tmp_path / "home" / "conda" / "repodata")
    text = run_nbcore("doctor", cwd=tmp_path, env=variables).stdout
    assert "  conda packages: %s (0.1 MB)" % (tmp_path / "pkgs") in text.splitlines()


def _pip_report(prefix, *items):
    import json

    from nb_conda.prefix import PIP_REPORT

    report = prefix / PIP_REPORT
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"install": [dict(metadata={"name": n, "version": "1.0"}, download_info=info)
                                              for n, info in items]}))


def test_locked_pip_packages_all_get_a_sha256(tmp_path):
    from nb_conda.integrity import file_digest
    from nb_conda.prefix import pip_installed

    wheel = tmp_path / "local-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not hashed by pip")
    _pip_report(tmp_path, ("hashed", {"url": "https://x/hashed-1.0.whl", "archive_info": {"hashes": {"sha256": "ab" * 32}}}),
                ("old-pip", {"url": "https://x/old-1.0.whl", "archive_info": {"hash": "sha256=" + "cd" * 32}}),
                ("local", {"url": wheel.as_uri(), "archive_info": {}}))
    assert [(p["name"], p["url"], p["sha256"]) for p in pip_installed(tmp_path)] == [
        ("hashed", "https://x/hashed-1.0.whl", "ab" * 32), ("old-pip", "https://x/old-1.0.whl", "cd" * 32),
        ("local", wheel.as_uri(), file_digest(wheel))]


@pytest.mark.parametrize("info", [{"url": "file:///src/method", "dir_info": {"editable": True}},
                                  {"url": "https://github.com/o/method", "vcs_info": {"vcs": "git", "commit_id": "0"}}])
def test_a_pip_package_with_no_archive_cannot_be_locked(tmp_path, info):
    from nbcore.plugin import InstallError
    from nb_conda.prefix import pip_installed

    _pip_report(tmp_path, ("method", info))
    with pytest.raises(InstallError, match="cannot lock the pip package method 1.0: it was installed from .*"
                                           "install it from install_script"):
        pip_installed(tmp_path)
