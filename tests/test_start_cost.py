"""What starting an installed environment leaves out: no YAML or JSON Schema for a config validated before,
no command line for ``open_backend``, no interpreter lookup for a venv that exists.
(The time itself is measured in docs/cli.md, not here.)"""
import json
import os
import subprocess
import sys
import types

import pytest

from nbcore.builtin import venv as venv_backend
from nbcore.errors import ConfigError
from nbcore.host import config_cache, config_check
from nbcore.host.config import parse_config
from nbcore.plugin.store import make_environment
from nbcore.plugin.registry import build_registry
from nbcore.spec import EnvironmentSpec

from nbtest import clean_environ, write

pytestmark = pytest.mark.usefixtures("clean_env")

TEXT = "environments:\n  demo:\n    python: '3.11'\n    packages: [numpy]\n  other: {}\n"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def backends():
    return build_registry(autoload=False).backends


@pytest.fixture
def checks(monkeypatch):
    """Counts the full parse-and-validate runs."""
    calls = []
    real = config_check.check

    def counting(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(config_check, "check", counting)
    return calls


def test_a_valid_config_is_parsed_once(home, backends, checks):
    first = parse_config(TEXT, "a.yaml", backends)
    second = parse_config(TEXT, "b.yaml", backends)
    assert checks == [TEXT]
    assert first.spec("demo").to_dict() == second.spec("demo").to_dict()
    assert second.spec("demo").packages == ("numpy",) and second.spec("demo").python == "3.11"
    assert [second.spec(n).source for n in ("demo", "other")] == ["b.yaml:2", "b.yaml:5"]
    parse_config(TEXT + "  third: {}\n", "a.yaml", backends)
    assert len(checks) == 2, "a changed text is checked again"


def test_a_changed_schema_of_a_section_in_use_checks_again(home, backends, checks):
    """A plugin installed, removed or changed changes the schema of its section: a text that has the section is
    checked again; one without it is not."""
    text = TEXT + "  sectioned:\n    extra: {key: 1}\n"
    plugin = types.SimpleNamespace(config_schema={"type": "object"})
    parse_config(TEXT, "a.yaml", backends)
    parse_config(TEXT, "a.yaml", dict(backends, extra=plugin))
    assert len(checks) == 1, "a backend whose section the text does not use changes nothing"
    parse_config(text, "a.yaml", dict(backends, extra=plugin))
    parse_config(text, "a.yaml", dict(backends, extra=plugin))
    assert len(checks) == 2
    stricter = types.SimpleNamespace(config_schema={"type": "object", "properties": {"key": {"type": "integer"}}})
    parse_config(text, "a.yaml", dict(backends, extra=stricter))
    assert len(checks) == 3
    with pytest.raises(ConfigError, match="unknown key 'environments.sectioned.extra'"):
        parse_config(text, "a.yaml", backends)


def test_an_invalid_config_is_never_remembered(home, backends, checks):
    text = "environments:\n  demo:\n    pakages: [numpy]\n"
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"^a.yaml:3: unknown key 'environments.demo.pakages'"):
            parse_config(text, "a.yaml", backends)
    assert len(checks) == 2
    assert not list(home.glob("config-cache/*.json"))


def test_a_damaged_entry_is_checked_again_and_repaired(home, backends, checks):
    parse_config(TEXT, "a.yaml", backends)
    (entry,) = (home / "config-cache").glob("*.json")
    for damage in ("{not json", '{"data": {}, "lines": {}}', '{"data": {"environments": {"x": {}}}, "lines": {}}'):
        entry.write_text(damage)
        assert set(parse_config(TEXT, "a.yaml", backends).environments) == {"demo", "other"}
    assert len(checks) == 4
    assert config_cache.CACHE.load(entry.stem)["lines"] == {"demo": 2, "other": 5}


def test_an_unwritable_cache_is_no_error(tmp_path, monkeypatch, backends, checks):
    monkeypatch.setenv("NBCORE_HOME", str(write(tmp_path / "a-file", "")))  # mkdir fails under it
    for _ in range(2):
        assert set(parse_config(TEXT, "a.yaml", backends).environments) == {"demo", "other"}
    assert len(checks) == 2


def test_yaml_types_json_cannot_keep_are_not_remembered(home, backends, checks):
    text = "environments:\n  demo:\n    venv: {}\n    conda: {when: 2024-01-01}\n"
    for _ in range(2):
        parse_config(text, "a.yaml", backends)
    assert len(checks) == 2


def test_the_cache_keeps_a_bounded_number_of_entries(home, backends, monkeypatch):
    monkeypatch.setattr(config_cache.CACHE, "max_entries", 3)
    for i in range(6):
        parse_config("environments:\n  e%d: {}\n" % i, "a.yaml", backends)
    assert len(list((home / "config-cache").glob("*.json"))) == 3


#: Modules a start on a known config needs none of: the config check's, what reads the plugins' entry points
#: (remembered), the logging package (nothing to log; the CLI leaves setting it up to the first record), the parts of the plugin API only some plugins use, and (but
#: for ``nbcore call``) the CLI's.
RARE_PATH_MODULES = ("yaml", "jsonschema", "importlib.metadata", "logging", "nbcore.plugin.capabilities",
                     "nbcore.plugin.containers", "nbcore.plugin.environments", "argparse", "nbcore.cli.main")


#: The first-party plugins that provide backends.
BACKEND_PLUGINS = ("nb_conda", "nb_docker", "nb_apptainer", "nb_ray", "nb_slurm")


def _start_twice(tmp_path, code, *args):
    """Run ``code`` (which calls ``mod:f`` of environment ``bare`` with 1 and 2, then prints the result) in a fresh
    process twice, the first on a config never seen; each time the :data:`RARE_PATH_MODULES` it imported."""
    project = tmp_path / "project"  # on sys.path: kept apart from the home, which the first start creates
    write(project / "nbcore.yaml", "environments:\n  bare: {}\n")
    write(project / "mod.py", "def f(a, b):\n    return a + b\n")
    probe = ("import json, sys\n%s\nprint(json.dumps(sorted(m for m in %r if m in sys.modules)))"
             % (code, RARE_PATH_MODULES))
    variables = clean_environ({"NBCORE_HOME": str(tmp_path / "home")})
    imported = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", probe] + list(args), cwd=str(project), env=variables,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "3"
        imported.append(set(json.loads(result.stdout.splitlines()[1])))
    assert {"jsonschema", "yaml", "importlib.metadata"} <= imported[0], "a config never seen is checked"
    return imported[1]


def test_a_cli_start_on_a_known_config_imports_only_what_the_start_needs(tmp_path):
    code = "from nbcore.cli.main import main\nassert main(sys.argv[1:]) == 0"
    assert _start_twice(tmp_path, code, "call", "bare", "mod:f", "--args", "[1, 2]", "--backend", "python") == {
        "argparse", "nbcore.cli.main"}


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_the_cli_output_is_set_up_when_the_first_record_comes(tmp_path, verbose):
    """Without -v the CLI imports logging only for a record it shows, which it shows in its own format."""
    write(tmp_path / "nbcore.yaml", "environments:\n  bare: {}\n")
    code = ("import sys\nfrom nbcore.cli.main import main\nfrom nbcore.log import log\n"
            "assert main(sys.argv[1:]) == 0\nprint('logging' in sys.modules)\nlog.warning('late %s', 1)")
    argv = [sys.executable, "-c", code, "call", "bare", "builtins:len", "--args", "[[]]", "--backend", "python"]
    for _ in range(2):  # the second start, on a known config
        result = subprocess.run(argv + verbose, cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
                                env=clean_environ({"NBCORE_HOME": str(tmp_path / "home")}))
        assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", str(bool(verbose))]
    assert "nbcore: late 1" in result.stderr.splitlines()
    assert ("nbcore: backend python" in result.stderr) == bool(verbose), result.stderr


def test_opening_an_environment_imports_only_what_the_start_needs(tmp_path):
    code = ("import nbcore\n"
            "with nbcore.open_backend('bare', backend='python') as env:\n"
            "    print(env.call('mod:f', 1, 2))")
    assert _start_twice(tmp_path, code) == set()


def test_a_spec_s_backends_list_imports_no_other_backend_plugin(tmp_path):
    """Opening without --backend: the spec's available first choice decides, the other plugins stay unimported."""
    write(tmp_path / "nbcore.yaml", "environments:\n  bare:\n    backends: [python]\n")
    write(tmp_path / "mod.py", "def f(a, b):\n    return a + b\n")
    code = ("import sys, nbcore\n"
            "with nbcore.open_backend('bare') as env:\n"
            "    assert env.backend == 'python' and env.call('mod:f', 1, 2) == 3\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (BACKEND_PLUGINS,))
    for _ in range(2):  # the second start, on a known config (the first validates it against every backend)
        result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                                env=clean_environ({"NBCORE_HOME": str(tmp_path / "home")}), timeout=120)
        assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_an_installed_venv_needs_no_interpreter_lookup(tmp_path, monkeypatch):
    backend = venv_backend.VenvBackend()
    env = make_environment(tmp_path, backend, "old", EnvironmentSpec(python="2.9"))
    find_interpreter = venv_backend.find_interpreter
    find_interpreter.cache_clear()
    try:
        assert "no Python 2.9 found" in backend.check_spec(env)
        monkeypatch.setattr(venv_backend, "find_interpreter", lambda wanted: pytest.fail("looked up " + wanted))
        python = backend.python(env)
        python.parent.mkdir(parents=True)
        os.symlink(sys.executable, str(python))
        assert backend.check_spec(env) is None
    finally:
        find_interpreter.cache_clear()

