"""The plugin machinery: hookspecs, the registry, entry-point discovery of a real distribution."""
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import types

import pytest

from nbcore.plugin import hookspecs
from nbcore.plugin import registry as plugins
from nbcore.plugin.backend import BackendProvider
from nbcore.errors import PluginError
from nbcore.plugin.protocol import ProtocolProvider

from nbcore.testing import FakeBackend
from nbtest import REPO_ROOT, clean_environ, write

pytestmark = pytest.mark.usefixtures("clean_env")


class Backend(FakeBackend):
    """A test backend whose type name messages show."""


class Protocol(ProtocolProvider):
    worker_module = "nbtest_nowhere"

    def __init__(self, name):
        self.name = name

    def check_available(self):
        return None

    def host_offer(self, channel):
        raise NotImplementedError

    def host_complete(self, channel, state, reply):
        raise NotImplementedError


def plugin_module(name, backends=(), protocols=(), **extra):
    module = types.ModuleType(name)
    if backends or protocols:
        @plugins.hookimpl
        def nbcore_register(register):
            for b in backends:
                register.backend(Backend(b))
            for p in protocols:
                register.protocol(Protocol(p))
        module.nbcore_register = nbcore_register
    for key, value in extra.items():
        setattr(module, key, value)
    return module


def specs():
    return [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("nbcore_")]


def test_every_name_of_the_plugin_api_resolves_from_its_module():
    """``nbcore.plugin`` imports a name's module when the name is first used; each name is the module's object."""
    import nbcore.plugin

    for name in nbcore.plugin.__all__:
        value = getattr(nbcore.plugin, name)
        home = sys.modules[nbcore.plugin._EXPORTS[name]] if name in nbcore.plugin._EXPORTS else None
        assert home is None or getattr(home, name) is value, name
    assert set(nbcore.plugin.__all__) <= set(dir(nbcore.plugin))
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        nbcore.plugin.Nothing


def test_every_hookspec_is_documented():
    assert specs(), "no hookspecs found"
    for name, fn in specs():
        doc = inspect.getdoc(fn) or ""
        assert len(doc.splitlines()[0]) > 10, "%s has no summary line" % name
        for param in inspect.signature(fn).parameters:
            assert ":param %s:" % param in doc, "%s does not document %s" % (name, param)
        assert "versionadded" in doc, name
        assert "firstresult" in doc, "%s does not say whether it is firstresult" % name


def legacy_plugin_module(name, backends, protocols):
    """A plugin written against 0.1: one hook per kind, each given a plain ``register(provider)``."""
    module = types.ModuleType(name)

    @plugins.hookimpl
    def nbcore_register_backends(register):
        for b in backends:
            register(Backend(b))

    @plugins.hookimpl
    def nbcore_register_protocols(register):
        for p in protocols:
            register(Protocol(p))

    module.nbcore_register_backends = nbcore_register_backends
    module.nbcore_register_protocols = nbcore_register_protocols
    return module


def test_builtins_use_the_register_hook_and_the_01_hooks_still_work_with_a_deprecation():
    registry = plugins.build_registry(autoload=False)
    used = {hook for info in registry.plugins.values() if info.builtin for hook in info.hooks}
    assert used == {"nbcore_register"}
    legacy = legacy_plugin_module("nbtest_legacy", backends=["old-b"], protocols=["old-p"])
    with pytest.warns(DeprecationWarning, match=r"nbcore_register_(backends|protocols) is deprecated since nbcore 0.2"):
        registry = plugins.build_registry(plugins=[legacy], autoload=False)
    assert registry.plugins["nbtest_legacy"].hooks == ["nbcore_register_backends", "nbcore_register_protocols"]
    assert "old-b" in registry.backends and "old-p" in registry.protocols
    assert used | set(registry.plugins["nbtest_legacy"].hooks) == {name for name, _ in specs()}


def test_builtins_are_registered_through_the_hooks():
    registry = plugins.build_registry(autoload=False)
    assert {"venv", "python"} <= set(registry.backends)
    assert "tcp-pickle" in registry.protocols
    assert registry.plugin_of("backend", "venv").module == "nbcore.builtin.venv"
    assert registry.plugin_of("protocol", "tcp-pickle").builtin
    for name in plugins.DEFAULT_PLUGINS:
        info = registry.plugins[name]
        assert info.builtin and info.distribution == "nbcore"


def test_in_process_plugin_is_attributed():
    module = plugin_module("nbtest_extra", backends=["b1", "b2"], protocols=["p1"])
    registry = plugins.build_registry(plugins=[module], autoload=False)
    assert {"b1", "b2"} <= set(registry.backends) and "p1" in registry.protocols
    info = registry.plugins["nbtest_extra"]
    assert (info.backends, info.protocols, info.builtin) == (["b1", "b2"], ["p1"], False)
    assert info.hooks == ["nbcore_register"]
    assert registry.plugin_of("backend", "b2") is info


def test_duplicate_backend_name_is_rejected():
    with pytest.raises(PluginError, match=r"plugin 'nbtest_dup' registers backend 'venv', already provided by plugin 'nbcore.builtin.venv'"):
        plugins.build_registry(plugins=[plugin_module("nbtest_dup", backends=["venv"])], autoload=False)


def test_duplicate_between_two_third_party_plugins():
    first = plugin_module("nbtest_first", protocols=["fast"])
    second = plugin_module("nbtest_second", protocols=["fast"])
    with pytest.raises(PluginError, match="already provided by plugin 'nbtest_first'"):
        plugins.build_registry(plugins=[first, second], autoload=False)


def test_hook_without_spec_is_rejected():
    @plugins.hookimpl
    def nbcore_register_widgets(register):
        pass

    module = plugin_module("nbtest_typo", nbcore_register_widgets=nbcore_register_widgets)
    with pytest.raises(PluginError, match="nbcore_register_widgets") as info:
        plugins.build_registry(plugins=[module], autoload=False)
    assert info.value.plugin == "nbtest_typo"


def test_hook_with_a_wrong_signature_is_rejected():
    @plugins.hookimpl
    def nbcore_register(register, extra):
        pass

    module = plugin_module("nbtest_badsig", nbcore_register=nbcore_register)
    with pytest.raises(PluginError, match="extra"):
        plugins.build_registry(plugins=[module], autoload=False)


def test_provider_without_name_and_failing_hook():
    @plugins.hookimpl
    def nbcore_register(register):
        register.backend(Backend(""))

    with pytest.raises(PluginError, match="plugin 'nbtest_noname' registered a backend provider without a name"):
        plugins.build_registry(plugins=[plugin_module("nbtest_noname", nbcore_register=nbcore_register)],
                               autoload=False)

    @plugins.hookimpl
    def nbcore_register(register):  # noqa: F811 (a second plugin's hook)
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match=r"plugin 'nbtest_fails' failed in nbcore_register: boom") as info:
        plugins.build_registry(plugins=[plugin_module("nbtest_fails", nbcore_register=nbcore_register)],
                               autoload=False)
    assert info.value.plugin == "nbtest_fails"


def test_fresh_registry_fixture(fresh_registry, monkeypatch):
    first = fresh_registry()
    assert first is plugins.get_registry()
    monkeypatch.setattr(plugins, "_registry", None)
    assert fresh_registry() is not first


def test_missing_hint_from_the_checkout(monkeypatch, tmp_path):
    registry = plugins.build_registry(autoload=False)
    assert plugins.missing_hint("docker", registry) == " (pip install ./plugins/nb-docker provides it)"
    assert plugins.missing_hint("shm-pickle", registry) == " (pip install ./plugins/nb-shm provides it)"
    assert plugins.missing_hint("nosuch", registry) == ""
    monkeypatch.chdir(tmp_path)  # outside the checkout: its absolute path
    assert registry.hint("conda-prefix") == "pip install %s" % (REPO_ROOT / "plugins" / "nb-conda")


def test_hint_from_an_installed_distribution_names_the_package(monkeypatch, tmp_path):
    """nbcore installed from a wheel has no plugins/ folder beside it: the hint is the package name."""
    fake = tmp_path / "site-packages" / "nbcore" / "plugin" / "registry.py"
    monkeypatch.setattr(plugins, "__file__", str(fake))
    registry = plugins.build_registry(autoload=False)
    assert registry.hint("ray") == "pip install nb-ray"
    assert registry.absent("backend") == sorted(set(registry.absent("backend")) - set(registry.backends))
    assert "apptainer" in registry.absent("backend") and "shm-pickle" in registry.absent("protocol")


def test_a_plugin_declares_its_own_hint():
    @plugins.hookimpl
    def nbcore_register(register):
        register.hint("gpu-farm", "pip install 'nbtest-farm[gpu]'")

    registry = plugins.build_registry(plugins=[plugin_module("nbtest_farm", nbcore_register=nbcore_register)],
                                      autoload=False)
    assert plugins.missing_hint("gpu-farm", registry) == " (pip install 'nbtest-farm[gpu]' provides it)"

    @plugins.hookimpl
    def nbcore_register(register):  # noqa: F811 (another plugin's hook)
        register.hint("gpu-farm", "two\nlines")

    with pytest.raises(PluginError, match="a hint is one line"):
        plugins.build_registry(plugins=[plugin_module("nbtest_badhint", nbcore_register=nbcore_register)],
                               autoload=False)


# a real third-party distribution, installed with pip into a temporary venv ------------

PLUGIN_MODULE = '''
"""A third-party nbcore plugin used by nbcore's tests: a backend "hello" that automatic selection
prefers, and an upgrade protocol "hello-up" that the default protocol list tries."""
from nbcore.builtin.python import PythonBackend
from nbcore.plugin import UPGRADE, ProtocolProvider, hookimpl


class HelloBackend(PythonBackend):
    name = "hello"
    description = "in-process worker, from a third-party distribution"
    auto_priority = 1000


class HelloUpgrade(ProtocolProvider):
    name = "hello-up"
    worker_module = "nbtest_hello.worker"
    roles = frozenset([UPGRADE])
    preference = 5

    def check_available(self):
        return None

    def host_offer(self, channel):
        return None, {"greeting": "hi"}

    def host_complete(self, channel, state, reply):
        assert reply == {"greeting": "hi back"}, reply
        channel.protocol = "hello-up"
        return channel


@hookimpl
def nbcore_register_backends(register):
    register(HelloBackend())


@hookimpl
def nbcore_register(register):
    register.protocol(HelloUpgrade())
'''

PLUGIN_WORKER_MODULE = '''
"""The worker side of hello-up: it keeps the connection and renames it."""


def worker_available():
    return None


def worker_accept_offer(channel, offer):
    channel.protocol = "hello-up"
    return channel, {"greeting": offer["greeting"] + " back"}
'''

PLUGIN_PYPROJECT = '''
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "nbtest-hello"
version = "1.2.3"
dependencies = ["nbcore"]

[project.entry-points.nbcore]
nbtest-hello = "nbtest_hello"

[tool.hatch.build.targets.wheel]
packages = ["nbtest_hello"]
'''


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory):
    """A fresh venv with nbcore (from this checkout) and the nbtest-hello distribution pip-installed."""
    root = tmp_path_factory.mktemp("third-party")
    write(root / "nbtest-hello" / "pyproject.toml", PLUGIN_PYPROJECT)
    write(root / "nbtest-hello" / "nbtest_hello" / "__init__.py", PLUGIN_MODULE)
    write(root / "nbtest-hello" / "nbtest_hello" / "worker.py", PLUGIN_WORKER_MODULE)
    venv = root / "venv"
    python = venv / "bin" / "python"
    uv = shutil.which("uv")
    if uv:
        commands = [[uv, "venv", "-q", "--python", sys.executable, str(venv)],
                    [uv, "pip", "install", "-q", "--python", str(python), "-e", str(REPO_ROOT), str(root / "nbtest-hello")]]
    else:
        commands = [[sys.executable, "-m", "venv", str(venv)],
                    [str(python), "-m", "pip", "install", "-q", "-e", str(REPO_ROOT), str(root / "nbtest-hello")]]
    for argv in commands:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=clean_environ())
        assert result.returncode == 0, result.stderr
    return root, python


def venv_nbcore(python, *args, cwd=None, **extra):
    env = clean_environ(extra)
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(python), "-m", "nbcore"] + list(args), capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_third_party_plugin_is_discovered(plugin_venv):
    root, python = plugin_venv
    result = venv_nbcore(python, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    found = {p["name"]: p for p in json.loads(result.stdout)}
    hello = found["nbtest-hello"]
    assert hello["distribution"] == "nbtest-hello" and hello["version"] == "1.2.3"
    assert hello["module"] == "nbtest_hello" and hello["backends"] == ["hello"] and not hello["builtin"]
    assert hello["protocols"] == ["hello-up"]
    assert hello["hooks"] == ["nbcore_register", "nbcore_register_backends"]
    assert found["nbcore.builtin.venv"]["builtin"]

    result = venv_nbcore(python, "backends", "--json")
    assert result.returncode == 0, result.stderr
    backends = {b["name"]: b for b in json.loads(result.stdout)}
    assert backends["hello"]["plugin"] == "nbtest-hello" and backends["hello"]["available"]
    # nbcore itself was not modified: none of its modules mentions the plugin
    assert not [p for p in (REPO_ROOT / "nbcore").rglob("*.py") if "nbtest" in p.read_text()]


def test_third_party_backend_is_selectable(plugin_venv, tmp_path):
    root, python = plugin_venv
    write(tmp_path / "nbcore.yaml", "environments:\n  demo: {}\n")
    write(tmp_path / "nbtest_hello_mod.py", "def f(a, b):\n    return a * b\n")
    result = venv_nbcore(python, "call", "demo", "nbtest_hello_mod:f", "--args", "[6, 7]", "--backend", "hello", "--json",
                         cwd=tmp_path, NBCORE_HOME=str(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["result"] == 42 and data["backend"] == "hello" and data["protocol"].startswith("hello-up")
    # NBCORE_BACKEND selects it too, and the config's spec may carry a section for it
    write(tmp_path / "nbcore.yaml", "environments:\n  demo: {hello: {}}\n")
    result = venv_nbcore(python, "call", "demo", "nbtest_hello_mod:f", "--args", "[2, 3]", "--json", cwd=tmp_path,
                         NBCORE_HOME=str(tmp_path / "home"), NBCORE_BACKEND="hello")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "hello"


def test_third_party_backend_and_protocol_are_chosen_by_default(plugin_venv, tmp_path):
    """No flag, no variable, no config key: the plugin's priority picks its backend, and its upgrade
    protocol is in the default list and negotiated."""
    root, python = plugin_venv
    write(tmp_path / "nbcore.yaml", "environments:\n  demo: {}\n")
    write(tmp_path / "nbtest_hello_mod.py", "def f(a, b):\n    return a + b\n")
    result = venv_nbcore(python, "call", "demo", "nbtest_hello_mod:f", "--args", "[6, 7]", "--json", cwd=tmp_path,
                         NBCORE_HOME=str(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["result"], data["backend"]) == (13, "hello")
    assert data["protocol"].startswith("hello-up"), data
    result = venv_nbcore(python, "protocols", "--json")
    assert json.loads(result.stdout)["protocol_list"][0] == "tcp-pickle"
    assert "hello-up" in json.loads(result.stdout)["protocol_list"]


def test_disabling_a_plugin(plugin_venv, tmp_path):
    root, python = plugin_venv
    write(tmp_path / "nbcore.yaml", "environments:\n  demo: {}\n")
    for variables in ({"NBCORE_DISABLE_PLUGINS": "nbtest-hello"}, {"NBCORE_DISABLE_PLUGIN_AUTOLOAD": "1"}):
        result = venv_nbcore(python, "backends", "--json", **variables)
        assert result.returncode == 0, result.stderr
        assert "hello" not in {b["name"] for b in json.loads(result.stdout)}
    result = venv_nbcore(python, "call", "demo", "m:f", "--backend", "hello", cwd=tmp_path,
                         NBCORE_DISABLE_PLUGINS="nbtest-hello")
    assert result.returncode == 2 and "unknown backend 'hello'" in result.stderr


def example_plugin_files():
    """The files of the complete example plugin in docs/plugins.md: code blocks whose first line names a file."""
    text = (REPO_ROOT / "docs" / "plugins.md").read_text()
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", text, re.S):
        first = block.splitlines()[0]
        match = re.match(r"^# (nb_interpreter/\S+\.py|pyproject\.toml)$", first)
        if match:
            files[match.group(1)] = block
    return files


def test_the_documented_example_plugin_works_as_written(plugin_venv, tmp_path):
    root, python = plugin_venv
    files = example_plugin_files()
    assert set(files) == {"pyproject.toml", "nb_interpreter/backend.py", "nb_interpreter/plugin.py"}
    project = tmp_path / "nb-interpreter"
    for name, text in files.items():
        write(project / name, text)
    write(project / "nb_interpreter" / "__init__.py", "")
    uv = shutil.which("uv")
    argv = ([uv, "pip", "install", "-q", "--python", str(python), str(project)] if uv
            else [str(python), "-m", "pip", "install", "-q", "--no-deps", str(project)])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=clean_environ())
    assert result.returncode == 0, result.stderr
    write(tmp_path / "nbcore.yaml", "environments:\n  old:\n    interpreter: {path: %s}\n" % sys.executable)
    write(tmp_path / "mod.py", "import sys\ndef f(a, b):\n    return [a + b, sys.executable]\n")
    result = venv_nbcore(python, "call", "old", "mod:f", "--args", "[2, 3]", "--json", cwd=tmp_path,
                         NBCORE_HOME=str(tmp_path / "home"), NBCORE_DISABLE_PLUGINS="nbtest-hello")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["result"] == [5, sys.executable] and data["backend"] == "interpreter"
    result = venv_nbcore(python, "shell", "old", "--", "python", "-c",
                         "import os, sys; print(os.getcwd(), os.path.dirname(sys.executable))",
                         cwd=tmp_path, NBCORE_HOME=str(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path), os.path.dirname(sys.executable)]  # `python` is the spec's


def test_worker_environment_still_works_with_a_deprecation(tmp_path, monkeypatch):
    from nbcore.plugin import WorkerLaunch

    monkeypatch.setenv("PYTHONPATH", "/host/only")
    launch = WorkerLaunch(worker_path=tmp_path, cwd=None, variables={"NBCORE_X": "1"})
    with pytest.warns(DeprecationWarning, match=r"worker_environment\(\) is deprecated since nbcore 0.2"):
        env = launch.worker_environment()
    assert env["NBCORE_X"] == "1" and env["PYTHONPATH"] == str(tmp_path)
    with pytest.warns(DeprecationWarning):
        assert launch.worker_environment({"A": "b", "PYTHONHOME": "/x"}) == dict(launch.worker_variables(), A="b")


# features: what a backend can do, derived from what its class implements ------------------

def test_features_are_derived_from_the_methods_a_backend_implements():
    registry = plugins.build_registry(autoload=False)
    assert registry.backends["venv"].features >= {"command", "start_worker", "shell"}
    assert registry.backends["python"].features == {"start_worker"}
    assert "python" not in registry.with_feature("shell") and "venv" in registry.with_feature("shell")
    with pytest.raises(ValueError, match="unknown backend feature 'teleport'"):
        registry.with_feature("teleport")


def test_a_backend_that_can_neither_run_a_command_nor_start_a_worker_is_rejected():
    class Idle(Backend):
        start_worker = BackendProvider.start_worker  # back to the default, which needs command()

    @plugins.hookimpl
    def nbcore_register(register):
        register.backend(Idle("idle"))

    with pytest.raises(PluginError, match=r"plugin 'nbtest_idle' registered the backend 'idle', which can neither "
                                          r"run a command nor start a worker"):
        plugins.build_registry(plugins=[plugin_module("nbtest_idle", nbcore_register=nbcore_register)], autoload=False)


def test_a_missing_feature_is_one_line_naming_backend_feature_and_who_has_it(tmp_path):
    from nbtest import run_nbcore, write

    write(tmp_path / "nbcore.yaml", "environments:\n  demo: {}\n")
    result = run_nbcore("shell", "demo", "--backend", "python", "--", "true", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith("nbcore: error: the python backend cannot open a shell inside its environments "
                           "(nbcore shell); backends that can: "), line
    assert "venv" in line.split("backends that can: ")[1]
    result = run_nbcore("lock", "demo", "--backend", "python", cwd=tmp_path)
    assert result.returncode == 2 and "the python backend cannot write lock files (nbcore lock); backends that can:" \
        in result.stderr, result.stderr


def test_backends_and_plugins_json_show_features():
    from nbtest import cli_json

    backends = {b["name"]: b for b in cli_json("backends", "--json")}
    assert backends["python"]["features"] == ["start_worker"]
    assert {"command", "shell", "start_worker"} <= set(backends["venv"]["features"])
    builtin = {p["name"]: p for p in cli_json("plugins", "--json")}["nbcore.builtin.venv"]
    assert builtin["features"]["venv"] == backends["venv"]["features"]


def test_a_plugin_that_fails_to_import_is_one_line_and_the_others_keep_working(tmp_path):
    """A distribution whose entry point raises on import: its name, version and error in one warning line."""
    from nbtest import run_nbcore

    site = tmp_path / "site"
    info = site / "nbtest_broken-1.2.dist-info"
    write(info / "METADATA", "Metadata-Version: 2.1\nName: nbtest-broken\nVersion: 1.2\n")
    write(info / "entry_points.txt", "[nbcore]\nnbtest-broken = nbtest_broken_plugin\n")
    write(site / "nbtest_broken_plugin.py", "import nbtest_no_such_module\n")
    result = run_nbcore("backends", "--json", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert "venv" in {b["name"] for b in json.loads(result.stdout)}
    warning = [line for line in result.stderr.splitlines() if "nbtest" in line]
    assert len(warning) == 1 and "Traceback" not in result.stderr, result.stderr
    assert ("plugin 'nbtest-broken' (nbtest-broken 1.2) failed to load: ModuleNotFoundError: No module named "
            "'nbtest_no_such_module'; the other plugins work (NBCORE_DISABLE_PLUGINS=nbtest-broken skips it)") \
        in warning[0]
    doctor = run_nbcore("doctor", "--json", env={"PYTHONPATH": str(site)})
    assert "plugin 'nbtest-broken' (nbtest-broken 1.2) failed to load" in doctor.stdout
    quiet = run_nbcore("backends", env={"PYTHONPATH": str(site), "NBCORE_DISABLE_PLUGINS": "nbtest-broken"})
    assert quiet.returncode == 0 and "nbtest" not in quiet.stderr, quiet.stderr


#: Prints the plugin modules (``*.plugin``) a probe imported, then exits with the probe's code.
PLUGINS_IMPORTED = "import json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith('nb_') and m.endswith('.plugin'))))"


def test_only_the_plugins_a_command_needs_are_imported(tmp_path):
    """A call with a chosen backend imports the protocol plugins and no other first-party plugin; looking a
    backend up imports its plugin alone; listing the backends imports them all."""
    write(tmp_path / "nbcore.yaml", "environments:\n  bare: {}\n")
    write(tmp_path / "mod.py", "def f(a, b):\n    return a + b\n")
    variables = clean_environ({"NBCORE_HOME": str(tmp_path / "home")})
    call = ("from nbcore.cli.main import main; code = main(['call', 'bare', 'mod:f', '--args', '[1, 2]', "
            "'--backend', 'python']); " + PLUGINS_IMPORTED + "; sys.exit(code)")
    lookup = "from nbcore.plugin import get_registry; get_registry().backends['docker']; " + PLUGINS_IMPORTED
    listing = "from nbcore.plugin import get_registry; sorted(get_registry().backends); " + PLUGINS_IMPORTED
    outputs = [subprocess.run([sys.executable, "-c", probe], cwd=str(tmp_path), env=variables, capture_output=True,
                              text=True, timeout=120) for probe in (call, call, lookup, listing)]
    for result in outputs:
        assert result.returncode == 0, result.stderr
    assert outputs[0].stdout.splitlines()[0] == "3"
    assert json.loads(outputs[1].stdout.splitlines()[1]) == ["nb_shm.plugin"], "a known config: no other plugin"
    assert json.loads(outputs[2].stdout) == ["nb_docker.plugin"]
    assert {"nb_conda.plugin", "nb_docker.plugin", "nb_ray.plugin"} < set(json.loads(outputs[3].stdout))


@pytest.mark.parametrize("plugin", sorted(p.name for p in (REPO_ROOT / "plugins").glob("nb-*")))
def test_a_first_party_plugin_module_is_cheap_to_import(plugin):
    """A plugin is imported when a command may need it: its hooks module leaves engine clients, HTTP and the
    config parsers to the code that uses them."""
    module = plugin.replace("-", "_") + ".plugin"
    heavy = ("docker", "rattler", "ray", "urllib.request", "http.client", "requests", "yaml", "jsonschema")
    probe = "import json, sys, %s; print(json.dumps([m for m in %r if m in sys.modules]))" % (module, heavy)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
