"""Backend choice (explicit > NBCORE_BACKEND > config > automatic) and protocol lists."""
import logging
import os
from pathlib import Path

import pytest

from nbcore.plugin import registry as plugins
from nbcore.builtin import venv as venv_backend
from nbcore.errors import BackendUnavailable, UserError
from nbcore.host.selection import choose_backend, default_protocols, plan_protocols, protocol_list
from nbcore.spec import EnvironmentSpec
from nbcore.testing import FakeBackend, python_or_skip, registry_with
from nbcore.plugin.store import make_environment

pytestmark = pytest.mark.usefixtures("clean_env")




@pytest.fixture
def registry():
    return registry_with(FakeBackend("alpha"), FakeBackend("beta"), FakeBackend("broken", "the engine is not running"))


def choose(registry, spec=None, tmp_path=Path("/nonexistent"), **kwargs):
    spec = spec or EnvironmentSpec()
    provider, how = choose_backend(registry, lambda b: make_environment(tmp_path, b, "demo", spec), spec, **kwargs)
    return provider.name, how


def test_explicit_wins_over_everything(registry, monkeypatch):
    monkeypatch.setenv("NBCORE_BACKEND", "beta")
    assert choose(registry, requested="alpha", config_default="beta") == ("alpha", "requested")


def test_environment_variable_wins_over_config(registry, monkeypatch):
    monkeypatch.setenv("NBCORE_BACKEND", "alpha")
    assert choose(registry, config_default="beta") == ("alpha", "from NBCORE_BACKEND")


def test_nerfbaselines_alias(registry, monkeypatch):
    monkeypatch.setenv("NERFBASELINES_BACKEND", "alpha")
    assert choose(registry, config_default="beta") == ("alpha", "from NERFBASELINES_BACKEND")
    monkeypatch.setenv("NBCORE_BACKEND", "beta")
    assert choose(registry)[0] == "beta", "NBCORE_BACKEND wins over its alias"


def test_config_wins_over_automatic(registry):
    assert choose(registry, config_default="beta") == ("beta", "from the config file")


def test_automatic_follows_preferred_order_then_default(registry):
    assert choose(registry, EnvironmentSpec(backends=("broken", "beta", "alpha"))) == (
        "beta", "automatic: the first available of the spec's backends: [broken, beta, alpha]")
    # nothing preferred: the default order (conda, docker, apptainer, venv) ends on venv
    name, how = choose(registry)
    assert name == "venv" and how.startswith("automatic: the first available of ")


def test_automatic_reports_every_reason_when_nothing_fits():
    registry = registry_with(FakeBackend("only", "no engine"))
    registry.backends["venv"] = FakeBackend("venv", "disabled for the test")
    registry.backends["venv"].auto_priority = 10
    with pytest.raises(BackendUnavailable) as info:
        choose(registry, EnvironmentSpec(backends=("only",)))
    message = str(info.value)
    assert "only: no engine" in message and "venv: disabled for the test" in message
    assert "installable: apptainer (pip install ./plugins/nb-apptainer), conda (pip install ./plugins/nb-conda), docker" in message


@pytest.mark.parametrize("how", ["requested", "env", "config"])
def test_unknown_backend_lists_installed_and_hints_package(registry, monkeypatch, how):
    kwargs = {}
    if how == "requested":
        kwargs["requested"] = "docker"
    elif how == "env":
        monkeypatch.setenv("NBCORE_BACKEND", "docker")
    else:
        kwargs["config_default"] = "docker"
    with pytest.raises(BackendUnavailable) as info:
        choose(registry, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown backend 'docker' (pip install ./plugins/nb-docker provides it)")
    assert "installed backends: alpha, beta, broken (unavailable: the engine is not running), python, venv" in message
    assert "conda (pip install ./plugins/nb-conda)" in message


def test_unknown_backend_without_known_package(registry):
    with pytest.raises(BackendUnavailable) as info:
        choose(registry, requested="nosuch")
    assert "unknown backend 'nosuch'; installed backends: alpha" in str(info.value)


def test_unavailable_choice_gives_its_reason_once_and_names_the_others(registry):
    with pytest.raises(BackendUnavailable) as info:
        choose(registry, requested="broken")
    message = str(info.value)
    assert message.startswith("backend 'broken' cannot run this environment: the engine is not running; "
                              "other installed backends that can run it: alpha (--backend alpha), beta (--backend "
                              "beta), python (--backend python), venv (--backend venv)")
    assert message.count("the engine is not running") == 1


class ClusterBackend(FakeBackend):
    """A backend that decides where a spec runs: its section requires it."""

    required_by_section = True


@pytest.fixture
def with_cluster():
    def build(reason=None):
        return registry_with(FakeBackend("alpha"), ClusterBackend("cluster", reason))
    return build


def test_a_required_section_picks_its_backend_beside_other_sections(with_cluster):
    spec = EnvironmentSpec(sections={"alpha": {}, "cluster": {}})
    assert choose(with_cluster(), spec) == ("cluster", "the spec's cluster: section")


def test_an_unavailable_required_backend_is_an_error_not_a_move_elsewhere(with_cluster):
    for sections in ({"cluster": {}}, {"alpha": {}, "cluster": {}}):
        with pytest.raises(BackendUnavailable) as info:
            choose(with_cluster("no cluster answers at 10.0.0.1:6379"), EnvironmentSpec(sections=sections))
        message = str(info.value)
        assert "\n" not in message and message.startswith("the spec's cluster: section runs it on the cluster backend")
        assert "no cluster answers at 10.0.0.1:6379" in message and "--backend NAME" in message


def test_the_user_naming_a_backend_overrides_a_required_section(with_cluster, monkeypatch):
    registry = with_cluster("unreachable")
    spec = EnvironmentSpec(sections={"alpha": {}, "cluster": {}})
    assert choose(registry, spec, requested="alpha")[0] == "alpha"
    assert choose(registry, spec, config_default="alpha")[0] == "alpha"
    assert choose(registry, EnvironmentSpec(backends=("alpha",), sections={"cluster": {}}))[0] == "alpha"
    monkeypatch.setenv("NBCORE_BACKEND", "alpha")
    assert choose(registry, spec)[0] == "alpha"


def test_two_required_sections_ask_the_user_to_pick():
    registry = registry_with(ClusterBackend("east"), ClusterBackend("west"))
    with pytest.raises(UserError, match="sections of east and west, each of which runs it on its own backend"):
        choose(registry, EnvironmentSpec(sections={"east": {}, "west": {}}))


@pytest.fixture
def clear_interpreter_cache():
    venv_backend.find_interpreter.cache_clear()
    yield
    venv_backend.find_interpreter.cache_clear()


def test_python_39_found_on_path(clear_interpreter_cache, monkeypatch, tmp_path):
    python39 = python_or_skip("3.9")
    monkeypatch.setenv("PATH", os.path.dirname(python39) + os.pathsep + os.environ["PATH"])
    registry = plugins.build_registry(autoload=False)
    spec = EnvironmentSpec(python="3.9")
    assert choose(registry, spec, tmp_path, requested="venv") == ("venv", "requested")
    name, how = choose(registry, spec, tmp_path)
    assert name == "venv" and how.startswith("automatic")
    assert os.path.samefile(venv_backend.find_interpreter("3.9"), python39)
    # the in-process backend runs the host's Python, so it cannot provide 3.9
    with pytest.raises(BackendUnavailable, match="the host runs Python 3.1"):
        choose(registry, spec, tmp_path, requested="python")


def test_missing_python_is_a_one_line_error_naming_providers(clear_interpreter_cache, tmp_path):
    registry = plugins.build_registry(autoload=False)
    spec = EnvironmentSpec(python="2.9")
    for kwargs in ({"requested": "venv"}, {}):
        with pytest.raises(BackendUnavailable) as info:
            choose(registry, spec, tmp_path, **kwargs)
        message = str(info.value)
        assert "\n" not in message
        assert "no Python 2.9 found" in message
        assert "conda" in message and "docker" in message and "apptainer" in message


def test_missing_python_through_the_cli(tmp_path):
    from nbtest import run_nbcore, write

    write(tmp_path / "nbcore.yaml", "environments:\n  old:\n    python: '2.9'\n")
    result = run_nbcore("install", "old", "--backend", "venv", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no Python 2.9 found" in result.stderr
    assert "Traceback" not in result.stderr
    installed = plugins.get_registry().backends
    from nbcore.plugin.catalog import FIRST_PARTY
    from nbtest import REPO_ROOT

    for plugin in FIRST_PARTY:  # what is not installed is named with its folder (the CLI ran outside the checkout)
        for name in plugin.backends:
            assert (name in installed) or ("%s (pip install %s)" % (name, REPO_ROOT / plugin.folder) in result.stderr), name


# protocol lists ---------------------------------------------------------------

def test_protocol_list_precedence(monkeypatch):
    registry = plugins.build_registry(autoload=False)
    assert protocol_list(registry) == default_protocols(registry).split(",") == ["tcp-pickle"]
    assert protocol_list(registry, config_default="a,b") == ["a", "b"]
    monkeypatch.setenv("NERFBASELINES_PROTOCOL", "c")
    assert protocol_list(registry, config_default="a,b") == ["c"]
    monkeypatch.setenv("NBCORE_PROTOCOL", " d , e ,")
    assert protocol_list(registry, config_default="a,b") == ["d", "e"]
    assert protocol_list(registry, config_default="a,b", explicit="f") == ["f"]
    with pytest.raises(UserError, match="empty"):
        protocol_list(registry, explicit=" , ")


def test_plan_protocols_falls_back_with_logged_reasons(caplog):
    registry = plugins.build_registry(autoload=False)
    caplog.set_level(logging.INFO, logger="nbcore")
    fallback, candidates = plan_protocols(registry, ["nosuch", "tcp-pickle", "other"])
    assert fallback.name == "tcp-pickle" and candidates == []
    text = caplog.text
    assert "protocol nosuch cannot be the fallback: unknown protocol; using tcp-pickle" in text
    assert "protocol other skipped: unknown protocol" in text
    caplog.clear()
    plan_protocols(registry, ["tcp-pickle", "shm-pickle"])
    if "shm-pickle" not in registry.protocols:
        assert "shm-pickle skipped: unknown protocol (pip install ./plugins/nb-shm provides it)" in caplog.text


def test_a_ready_build_keeps_its_backend_when_a_preferred_one_appears():
    conda_like, venv_like = FakeBackend("newer"), FakeBackend("older")
    conda_like.auto_priority, venv_like.auto_priority = 200, 100
    registry = registry_with(conda_like, venv_like)
    built = {"older"}
    is_built = lambda provider: provider.name in built  # noqa: E731
    name, how = choose(registry, is_built=is_built)
    assert name == "older" and how.startswith("automatic: it has a ready build of this spec (a new build would use newer")
    # asked for: --rebuild (prefer_built=False), --backend, a backends: list
    assert choose(registry, is_built=is_built, prefer_built=False)[0] == "newer"
    assert choose(registry, is_built=is_built, requested="newer")[0] == "newer"
    assert choose(registry, EnvironmentSpec(backends=("newer", "older")), is_built=is_built)[0] == "newer"
    # not built yet, or built on the first choice too: the first choice
    built.clear()
    assert choose(registry, is_built=is_built)[0] == "newer"
    built.update({"newer", "older"})
    assert choose(registry, is_built=is_built)[0] == "newer"
    # a ready build on a backend that cannot run here does not count
    venv_like.reason = "gone"
    built.discard("newer")
    assert choose(registry, is_built=is_built)[0] == "newer"
