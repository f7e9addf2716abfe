"""The folder layout is the architecture: who may import what, checked on the source itself."""
import ast
from pathlib import Path

import pytest

from nbcore.plugin import PLUGIN_SURFACE

from nbtest import REPO_ROOT

PLUGINS = sorted(p for p in (REPO_ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def imported_modules(path: Path):
    """Every absolute module name ``path`` imports (relative imports stay inside the package)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def nbcore_imports(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        for module, line in imported_modules(path):
            if module == "nbcore" or module.startswith("nbcore."):
                yield "%s:%d" % (path.relative_to(REPO_ROOT), line), module


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_first_party_plugins_import_only_the_declared_surface(plugin):
    outside = ["%s imports %s" % (where, module) for where, module in nbcore_imports(plugin)
               if module not in PLUGIN_SURFACE]
    assert not outside, "plugins may import only %s:\n%s" % (", ".join(PLUGIN_SURFACE), "\n".join(outside))


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugins_import_no_other_plugin(plugin):
    packages = {p.name: next(p.glob("nb_*")).name for p in PLUGINS}
    others = {package for name, package in packages.items() if name != plugin.name}
    found = ["%s imports %s" % (path.relative_to(REPO_ROOT), module)
             for path in plugin.rglob("*.py") for module, _ in imported_modules(path)
             if module.partition(".")[0] in others]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugins_share_one_layout(plugin):
    """``plugin.py`` holds the hooks and nothing else; only worker-side code is called worker."""
    package = next(plugin.glob("nb_*"))
    hooks = ast.parse((package / "plugin.py").read_text())
    kinds = {type(node).__name__ for node in hooks.body} - {"Expr", "Import", "ImportFrom"}
    assert kinds == {"FunctionDef"}, "%s/plugin.py holds %s besides hook functions" % (package.name, kinds - {"FunctionDef"})
    assert all(f.name.startswith("nbcore_") for f in hooks.body if isinstance(f, ast.FunctionDef))
    named_worker = [p for p in package.rglob("*worker*") if p.name != "worker" and "worker" not in p.parent.parts]
    assert not named_worker, "host-side modules named 'worker': %s" % named_worker


def test_worker_package_imports_nothing_host_side():
    imports = list(nbcore_imports(REPO_ROOT / "nbcore" / "worker"))
    host_side = ["%s imports %s" % (where, module) for where, module in imports
                 if not module.startswith("nbcore.worker")]
    assert not host_side, "\n".join(host_side)
    relative_up = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "nbcore" / "worker").rglob("*.py")
                   for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.ImportFrom) and node.level > 1]
    assert not relative_up, "nbcore/worker reaches out with '..' imports: %s" % relative_up


def test_no_core_module_but_the_catalog_names_a_plugin():
    """Plugins are known to the core through the registry, which alone reads nbcore/plugin/catalog.py."""
    import re

    from nbcore.plugin.catalog import FIRST_PARTY

    names = [p.distribution for p in FIRST_PARTY] + [n for p in FIRST_PARTY for n in p.backends]
    naming = re.compile(r"\bnb[-_](%s)\b|--backend (%s)\b" % (
        "|".join(p.distribution[3:] for p in FIRST_PARTY), "|".join(n for n in names if not n.startswith("nb-"))))
    found = []
    for path in sorted((REPO_ROOT / "nbcore").rglob("*.py")):
        if path.name == "catalog.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if naming.search(line):
                found.append("%s:%d: %s" % (path.relative_to(REPO_ROOT), number, line.strip()))
    assert not found, "\n".join(found)


def absolute_imports(path: Path, package: str):
    """Every module ``path`` (a module of ``package``) imports, relative imports resolved, function-local ones too."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else []))


@pytest.mark.parametrize("package, above", [
    ("plugin", ("nbcore.host", "nbcore.cli", "nbcore.builtin")),  # plugins import the API, it imports neither
    ("host", ("nbcore.cli",)),  # the CLI drives the host runtime, never the other way
])
def test_no_layer_imports_one_above_it(package, above):
    found = ["%s imports %s" % (path.relative_to(REPO_ROOT), module)
             for path in sorted((REPO_ROOT / "nbcore" / package).glob("*.py"))
             for module in absolute_imports(path, "nbcore." + package) if module.startswith(above)]
    assert not found, "\n".join(found)
