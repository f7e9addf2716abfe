"""Config files: validation errors are one line naming file:line and the key."""
import pytest

from nbcore.host.config import load_config, parse_config
from nbcore.errors import ConfigError
from nbcore.plugin.registry import build_registry

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


@pytest.fixture(scope="module")
def backends():
    return build_registry(autoload=False).backends


def config_error(text, backends, where="nbcore.yaml"):
    with pytest.raises(ConfigError) as info:
        parse_config(text, where, backends)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_empty_spec_is_valid(backends):
    config = parse_config("environments:\n  demo: {}\n  bare:\n", "f.yaml", backends)
    assert set(config.environments) == {"demo", "bare"}
    spec = config.spec("demo")
    assert spec.python is None and spec.packages == () and spec.install_script is None
    assert spec.source == "f.yaml:2"
    assert config.spec("bare").source == "f.yaml:3"


def test_full_spec(backends):
    config = parse_config("""\
backend: venv
protocol: tcp-pickle
environments:
  demo:
    python: 3.9
    packages: [numpy, "requests>=2"]
    install_script: echo hi
    backends: [docker, venv]
    venv: {}
    docker: {image: x}
""", "f.yaml", backends)
    spec = config.spec("demo")
    assert (config.backend, config.protocol) == ("venv", "tcp-pickle")
    assert spec.python == "3.9" and spec.packages == ("numpy", "requests>=2")
    assert spec.backends == ("docker", "venv") and spec.section("docker") == {"image": "x"}


def test_malformed_yaml(backends):
    message = config_error("environments:\n  demo: {packages: [numpy\n  other: {}\n", backends)
    assert message.startswith("nbcore.yaml:")
    assert "malformed YAML" in message
    line = int(message.split(":")[1])
    assert 2 <= line <= 4


def test_tab_indentation_is_malformed(backends):
    message = config_error("environments:\n\tdemo: {}\n", backends)
    assert message.startswith("nbcore.yaml:2: malformed YAML")


def test_unknown_top_level_key(backends):
    message = config_error("environments: {}\nbackends: venv\n", backends)
    assert message.startswith("nbcore.yaml:2: unknown key 'backends'")
    assert "allowed here" in message and "environments" in message


@pytest.mark.parametrize("text, line, expected", [
    ("environment:\n  demo: {}\n", 1, "unknown key 'environment' (did you mean 'environments'? allowed here: "),
    ("environments: {}\nbackends: venv\n", 2, "unknown key 'backends' (did you mean 'backend'? "),
    ("environments:\n  demo:\n    pakages: [numpy]\n", 3, "unknown key 'environments.demo.pakages' (did you mean "
                                                         "'environments.demo.packages'? "),
    ("environments:\n  demo:\n    instal_script: ls\n", 3, "(did you mean 'environments.demo.install_script'? "),
    ("environments:\n  demo:\n    venv:\n      zzz: 1\n", 4, "unknown key 'environments.demo.venv.zzz' (allowed here"),
])
def test_unknown_keys_get_a_suggestion_at_their_line(backends, text, line, expected):
    message = config_error(text, backends)
    assert message.startswith("nbcore.yaml:%d: " % line) and expected in message, message
    assert "\n" not in message


def test_unknown_spec_key(backends):
    message = config_error("environments:\n  demo:\n    python: '3.11'\n    pakages: [numpy]\n", backends)
    assert message.startswith("nbcore.yaml:4: unknown key 'environments.demo.pakages'")
    assert "packages" in message


def test_unknown_key_in_backend_section(backends):
    message = config_error("environments:\n  demo:\n    venv:\n      system_site_packages: true\n", backends)
    assert message.startswith("nbcore.yaml:4: unknown key 'environments.demo.venv.system_site_packages'")


@pytest.mark.parametrize("body, line, key", [
    ("    packages: numpy\n", 3, "environments.demo.packages"),
    ("    packages: [numpy, 3]\n", 3, "environments.demo.packages.1"),
    ("    install_script: [echo]\n", 3, "environments.demo.install_script"),
    ("    python: [3]\n", 3, "environments.demo.python"),
    ("    python: three\n", 3, "environments.demo.python"),
    ("    backends: venv\n", 3, "environments.demo.backends"),
    ("    venv: yes\n", 3, "environments.demo.venv"),
])
def test_wrong_types(backends, body, line, key):
    message = config_error("environments:\n  demo:\n" + body, backends)
    assert message.startswith("nbcore.yaml:%d: %s: " % (line, key)), message


def test_wrong_top_level_types(backends):
    assert config_error("environments: [demo]\n", backends).startswith("nbcore.yaml:1: environments: ")
    assert config_error("backend: 3\nenvironments: {}\n", backends).startswith("nbcore.yaml:1: backend: ")
    assert "'environments' is a required property" in config_error("backend: venv\n", backends)


def test_duplicate_keys(backends):
    message = config_error("environments:\n  demo: {}\n  other: {}\n  demo: {python: '3.9'}\n", backends)
    assert message == "nbcore.yaml:4: key 'demo' appears twice"
    message = config_error("environments:\n  demo:\n    packages: []\n    packages: [numpy]\n", backends)
    assert message == "nbcore.yaml:4: key 'packages' appears twice"


def test_bad_environment_name(backends):
    message = config_error("environments:\n  'no spaces': {}\n", backends)
    assert message.startswith("nbcore.yaml:")


def test_empty_file(backends):
    assert "empty" in config_error("", backends)
    assert "empty" in config_error("# only a comment\n", backends)


def test_undefined_environment(backends):
    config = parse_config("environments:\n  demo: {}\n", "f.yaml", backends)
    with pytest.raises(ConfigError, match=r"environment 'nope' is not defined in .*\(defined: demo\)"):
        config.spec("nope")


def test_load_config_names_the_file(tmp_path, backends):
    path = write(tmp_path / "cfg.yaml", "environments:\n  demo:\n    pythn: '3.9'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, backends)
    assert str(info.value).startswith("%s:3: unknown key 'environments.demo.pythn'" % path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", backends)


def test_plugin_section_is_validated_by_its_schema(fresh_registry, monkeypatch):
    import types

    from nbcore.plugin import registry as plugins
    from nbcore.plugin.backend import BackendProvider

    class Strict(BackendProvider):
        name = "strict"
        config_schema = {"type": "object", "additionalProperties": False,
                         "properties": {"level": {"type": "integer"}}}

        def check_available(self):
            return None

        def install(self, env, progress):
            pass

        def start_worker(self, env, launch):
            raise NotImplementedError

    module = types.ModuleType("nbtest_strict_plugin")

    @plugins.hookimpl
    def nbcore_register(register):
        register.backend(Strict())

    module.nbcore_register = nbcore_register
    backends = plugins.build_registry(plugins=[module], autoload=False).backends
    parse_config("environments:\n  demo:\n    strict: {level: 3}\n", "f.yaml", backends)
    message = config_error("environments:\n  demo:\n    strict:\n      level: high\n", backends)
    assert message.startswith("nbcore.yaml:4: environments.demo.strict.level: ")
    message = config_error("environments:\n  demo:\n    strict: {levle: 3}\n", backends)
    assert message.startswith("nbcore.yaml:3: unknown key 'environments.demo.strict.levle'")


@pytest.mark.parametrize("text, needle", [
    ("environments:\n  demo: {packages: [numpy\n", "malformed YAML"),
    ("environments:\n  demo:\n    pakages: [numpy]\n", "unknown key 'environments.demo.pakages'"),
    ("environments:\n  demo:\n    packages: numpy\n", "environments.demo.packages"),
    ("environments:\n  demo: {}\n  demo: {}\n", "appears twice"),
])
def test_cli_config_errors_are_one_line(tmp_path, text, needle):
    check_cli_error(tmp_path, text, needle, ["install", "demo"])


@pytest.mark.parametrize("command", [["call", "demo", "m:f"], ["shell", "demo"], ["install", "demo", "--force"]])
def test_cli_commands_report_config_errors(tmp_path, command):
    check_cli_error(tmp_path, "environments:\n  demo:\n    pakages: [numpy]\n", "unknown key", command)


def check_cli_error(tmp_path, text, needle, command):
    path = write(tmp_path / "nbcore.yaml", text)
    result = run_nbcore(command[0], "-c", path, *command[1:], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nbcore: error: %s:" % path) and needle in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_missing_config_file(tmp_path):
    result = run_nbcore("install", "demo", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no configuration" in result.stderr
    result = run_nbcore("install", "demo", "-c", tmp_path / "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text, line, start", [
    # a block value starts below its key: the key's line names it
    ("environments:\n  demo:\n    packages:\n      numpy: 1\n", 3, "environments.demo.packages: "),
    ("environments:\n  demo:\n    docker:\n      - x\n", 3, "environments.demo.docker: "),
    ("environments:\n  demo:\n    - numpy\n", 2, "environments.demo: "),
    ("environments: {}\nbackend:\n  - x\n", 2, "backend: "),
    # a list item names its own line
    ("environments:\n  demo:\n    packages:\n      - numpy\n      - 3\n", 5, "environments.demo.packages.1: "),
    # a bad environment name: the line of that name, not of the first one
    ("environments:\n  ok: {}\n  other: {}\n  'no spaces': {}\n", 4, "environments: name 'no spaces' does not match"),
    ("environments:\n  ok: {}\n  123: {}\n", 3, "environments: name 123 is not of type 'string'"),
    # keys YAML reads as other types
    ("environments:\n  demo:\n    packages: []\n    yes: 1\n", 4, "unknown key 'environments.demo.True'"),
    ("environments:\n  demo:\n    packages: []\n    3: 1\n", 4, "unknown key 'environments.demo.3'"),
    # nested type errors in a backend section
    ("environments:\n  demo:\n    packages: []\n    docker:\n      image: 3\n", 5, "environments.demo.docker.image: "),
    ("environments:\n  demo:\n    docker:\n      image: x\n\n      imag: 3\n", 6, "unknown key 'environments.demo.docker.imag'"),
    # an unknown key beside a merge key
    ("environments:\n  base: &b {packages: [numpy]}\n  demo:\n    <<: *b\n    pakages: 1\n", 5,
     "unknown key 'environments.demo.pakages'"),
])
def test_error_line_is_the_line_of_the_key_or_item(text, line, start):
    from nbcore.plugin.registry import get_registry

    backends = get_registry().backends
    if ".docker." in start and "docker" not in backends:
        pytest.skip("the docker section is validated by nb-docker, which is not installed")
    message = config_error(text, backends)
    assert message.startswith("nbcore.yaml:%d: %s" % (line, start)), message


def test_spec_source_is_the_line_of_the_environment_name(backends):
    config = parse_config("environments:\n  demo:\n    python: '3.11'\n  other:\n    packages: []\n", "f.yaml", backends)
    assert config.spec("demo").source == "f.yaml:2"
    assert config.spec("other").source == "f.yaml:4"
