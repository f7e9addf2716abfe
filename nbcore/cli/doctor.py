"""``nbcore doctor``: what is installed, what is missing, and how to fix it."""
import os
import shutil
import sys

from .. import __version__
from ..errors import NbcoreError
from ..home import check_writable, home_variable, nbcore_home
from ..plugin.registry import get_registry
from ..plugin.store import folder_bytes


def diagnose(config_path=None):
    """Collect the facts ``nbcore doctor`` prints; every problem comes with a fix."""
    registry = get_registry()
    home = nbcore_home()
    problems = []
    notes = []  # information: nothing to fix
    report = {
        "nbcore": __version__,
        "python": sys.version.split()[0],
        "home": {"path": str(home), "set_by": home_variable() or "default",
                 "envs_bytes": folder_bytes(home / "envs"), "worker_bytes": folder_bytes(home / "worker")},
        "uv": shutil.which("uv"),
        "backends": {}, "protocols": {}, "config": None, "environments": [], "problems": problems, "notes": notes,
    }
    report["interpreters"] = interpreters_found()
    unwritable = check_writable(home)
    report["home"]["writable"] = unwritable is None
    if unwritable:
        problems.append("the cache folder is not writable: " + unwritable)
    for name, provider in sorted(registry.backends.items()):
        reason = provider.check_available()
        report["backends"][name] = {"available": reason is None, "reason": reason}
        caches = {label: {"path": str(path), "bytes": folder_bytes(path)} for label, path in provider.caches().items()}
        if caches:
            report["backends"][name]["caches"] = caches
        if reason:  # a problem only for an environment that needs it (see check_project)
            notes.append("backend %s is unavailable here: %s" % (name, reason))
    for name, provider in sorted(registry.protocols.items()):
        reason = provider.check_available()
        report["protocols"][name] = {"available": reason is None, "reason": reason}
        if reason:
            problems.append("protocol %s is unavailable: %s" % (name, reason))
    problems.extend(registry.broken.values())
    report["not_installed"] = {name: registry.hint(name) for kind in ("backend", "protocol")
                               for name in registry.absent(kind)}
    if report["uv"] is None:
        notes.append("uv is not on PATH: venv environments are created with pip (slower); pip install uv")
    try:
        from ..host.config import find_config_file, load_config

        path = find_config_file(config_path)
        if path is not None:
            config = load_config(path, registry.backends)
            report["config"] = {"path": str(path), "environments": sorted(config.environments)}
            report["environments"] = check_project(config, registry, home)
            problems.extend("environment %s: %s" % (e["name"], e["problem"]) for e in report["environments"]
                            if e["problem"])
        else:
            problems.append("no config file found: create nbcore.yaml or pass -c FILE")
    except NbcoreError as exc:
        problems.append(str(exc))
    return report


def check_project(config, registry, home):
    """For each environment of ``config``: the backend it would use and why, whether it is built, whether its
    Python can be found (``problem`` says what stops it, None when nothing does)."""
    from ..host.selection import choose_backend
    from ..plugin.store import is_ready, make_environment

    results = []
    for name, spec in sorted(config.environments.items()):
        entry = {"name": name, "backend": None, "why": None, "built": False, "path": None,
                 "python": None, "problem": None}
        results.append(entry)
        try:
            provider, how = choose_backend(registry, lambda b: make_environment(home, b, name, spec), spec,
                                           config_default=config.backend,
                                           is_built=lambda b: is_ready(make_environment(home, b, name, spec),
                                                                       warn=False))
        except NbcoreError as exc:
            entry["problem"] = str(exc)
            continue
        env = make_environment(home, provider, name, spec)
        entry.update(backend=provider.name, why=how, path=str(env.path), built=is_ready(env, warn=False))
        entry["python"], entry["problem"] = _python_state(provider, env, entry["built"])
    return results


def _python_state(provider, env, built):
    """``(what doctor says of the environment's Python, problem or None)``."""
    wanted = env.spec.python or "the host's version"
    if not built:
        reason = provider.check_spec(env)
        if reason:
            return "Python %s: not found (%s)" % (wanted, reason), reason
        return "Python %s: available to build with" % wanted, None
    try:
        python = provider.worker_python(env)
    except NotImplementedError:
        return "Python %s: inside the built environment" % wanted, None
    except Exception as exc:  # a backend that cannot say: report it, do not stop the diagnosis
        return "Python %s: cannot be located (%s)" % (wanted, exc), None
    if python.startswith("/") and not os.path.exists(python) and provider.name in ("venv",):
        return "Python %s: %s is missing" % (wanted, python), (
            "its interpreter %s is gone; nbcore install %s --force rebuilds it" % (python, env.name))
    return "Python %s: %s" % (wanted, python), None


def format_project(environments):
    """Lines for the project's environments."""
    lines = []
    for e in environments:
        if e["backend"] is None:
            lines.append("env %-12s no backend: %s" % (e["name"], e["problem"]))
            continue
        lines.append("env %-12s backend %s (%s); %s; %s" % (
            e["name"], e["backend"], e["why"], "built at %s" % e["path"] if e["built"] else "not built yet",
            e["python"]))
    return lines


def format_diagnosis(report):
    """Human-readable lines for ``nbcore doctor``."""
    lines = ["nbcore %s on Python %s" % (report["nbcore"], report["python"]),
             "cache: %s (%s; envs %.1f MB, worker code %.1f MB; NBCORE_HOME moves it)" % (
                 report["home"]["path"], report["home"]["set_by"], report["home"]["envs_bytes"] / 1e6,
                 report["home"]["worker_bytes"] / 1e6),
             "uv: %s" % (report["uv"] or "not found")]
    for kind in ("backends", "protocols"):
        for name, state in report[kind].items():
            lines.append("%s %-10s %s" % (kind[:-1], name, "ok" if state["available"] else "unavailable: " + state["reason"]))
            for label, cache in state.get("caches", {}).items():
                lines.append("  %s: %s (%.1f MB)" % (label, cache["path"], cache["bytes"] / 1e6))
    for name, hint in report["not_installed"].items():
        lines.append("not installed: %s (%s)" % (name, hint))
    lines += format_interpreters(report)
    if report["config"]:
        lines.append("config: %s (%s)" % (report["config"]["path"], ", ".join(report["config"]["environments"])))
        lines += format_project(report["environments"])
    lines += ["note: " + n for n in report["notes"]]
    lines += ["problem: " + p for p in report["problems"]] or ["no problems found"]
    return "\n".join(lines)


def interpreters_found():
    """The Pythons the venv backend can use (PATH, pyenv, uv, mise, asdf) and the version managers installed."""
    from ..host.interpreters import discover, version_managers

    return {"found": [i.to_dict() for i in discover()], "version_managers": list(version_managers())}


def format_interpreters(report):
    """One line per interpreter found: version, where it was found, path."""
    pythons = report["interpreters"]
    lines = ["pythons: %d found (version managers: %s)" % (
        len(pythons["found"]), ", ".join(pythons["version_managers"]) or "none")]
    lines += ["  %-8s %-6s %s" % (i["version"], i["source"], i["path"]) for i in pythons["found"]]
    return lines
