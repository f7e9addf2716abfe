"""Building a conda prefix for a spec: the ``conda-prefix`` capability other plugins use.

::

    builder = get_registry().capability("conda-prefix")    # a CondaPrefixBuilder
    builder.build(spec, prefix, progress, run=my_runner)   # conda packages, pip, install_script
    variables = builder.activation(prefix, base=my_environment)

The conda packages are linked on the host, by whichever engine
:func:`nb_conda.engines.select_engine` picks.  Every later step (recording the
activation, pip, the install script) goes through ``run``, a callable
``run(argv, variables, cwd, step)`` that the caller supplies to execute a command
where the prefix will be used: on the host for the conda backend, inside a
container (the prefix bound at the same path) for a container backend.
``variables`` is the complete environment for the command; ``run`` returns
nothing and raises :class:`nbcore.plugin.InstallError` when the command fails.
"""
import json
import os
import textwrap
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

from nbcore.plugin import CondaPrefixCapability, InstallError

from . import activation, embedded, engines, integrity, settings

Runner = Callable[..., None]
#: pip's report of what the spec's pip step installed (``pip install --report``), read by :meth:`CondaPrefixBuilder.lock`.
PIP_REPORT = "conda-meta/nbcore-pip-report"
#: The lock file's pip packages with their hashes, as pip reads them (``--require-hashes``).
LOCKED_PIP = "conda-meta/nbcore-locked-pip.txt"
#: Output lines quoted when a step fails.
TAIL_LINES = 12
#: Host variables a step must not inherit (they would point into another Python or env).
_FOREIGN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "CONDA_PREFIX", "CONDA_SHLVL",
            "CONDA_DEFAULT_ENV", "CONDA_PROMPT_MODIFIER")


def host_runner(progress) -> Runner:
    """A runner that executes steps on this machine, streaming their output to ``progress``."""
    def run(argv, variables, cwd, step):
        progress.run(argv, step=step, env=dict(variables), cwd=str(cwd))
    return run


def clean_environment(base: Mapping[str, str]) -> Dict[str, str]:
    """``base`` without what belongs to another Python or conda env (PYTHONPATH, an active CONDA_PREFIX)."""
    return {k: v for k, v in base.items() if k not in _FOREIGN}


class CondaPrefixBuilder(CondaPrefixCapability):
    """Creates conda prefixes from specs and tells how to activate them (the ``conda-prefix`` capability).

    Stateless: one instance serves every caller.
    """

    def engine(self):
        """The engine :meth:`build` uses (raises :class:`nbcore.plugin.ConfigError` when there is none)."""
        return engines.select_engine()

    def build(self, spec, prefix, progress, run: Optional[Runner] = None, base: Optional[Mapping[str, str]] = None,
              variables: Optional[Mapping[str, str]] = None) -> None:
        """Create ``prefix`` (which must not exist yet) for ``spec``, an :class:`nbcore.plugin.EnvironmentSpec`.

        :param progress: an :class:`nbcore.plugin.Progress`; every step and engine line goes there.
        :param run: ``run(argv, variables, cwd, step)`` executes the steps after linking (default: the host).
        :param base: the environment steps start from before activation (default: this process's, cleaned).
        :param variables: extra variables for pip and the install script.
        """
        prefix = Path(prefix)
        run = run or host_runner(progress)
        base = clean_environment(os.environ if base is None else base)
        request = settings.conda_request(spec)
        engine = self.engine()
        progress.step("creating the conda prefix %s with the %s" % (prefix, engine.description))
        engine.create(request, prefix, progress)
        if not (prefix / "conda-meta").is_dir():
            raise InstallError("creating the conda prefix failed: %s made no %s/conda-meta" % (engine.name, prefix))
        if request.variables:
            _record_variables(prefix, request.variables)
        self._record_activation(prefix, base, run, progress)
        env = dict(self.activation(prefix, base), **(variables or {}))
        locked_pip = embedded.read_lock(request.lock_file, progress, conda=False)["pip"] if request.lock_file else []
        if locked_pip:  # exactly what was installed when the lock was written: no resolution, every hash checked
            requirements = prefix / LOCKED_PIP
            requirements.write_text("".join("%s --hash=sha256:%s\n" % (p["url"], p["sha256"]) for p in locked_pip))
            self._pip(prefix, run, progress, ["--no-deps", "--require-hashes", "-r", str(requirements)], env,
                      request.base_dir, "installing %d pip packages from the lock file" % len(locked_pip))
        elif request.pip:
            self._pip(prefix, run, progress, list(request.pip), env, request.base_dir,
                      "installing pip packages " + " ".join(request.pip))
        if request.install_script:
            _step(run, progress, ["bash", "-eo", "pipefail", "-c", request.install_script], env, request.base_dir,
                  "running install_script")

    @staticmethod
    def _pip(prefix, run, progress, arguments, env, cwd, step):
        """pip install with the prefix's pip; its report (what it downloaded, from where) is kept for lock files."""
        _step(run, progress, [str(prefix / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                              "--report", str(prefix / PIP_REPORT)] + arguments, env, cwd, step)

    def _record_activation(self, prefix: Path, base, run, progress) -> None:
        meta = prefix / "conda-meta"
        script, before, after = meta / "nbcore-activate.sh", meta / "nbcore-env-before", meta / "nbcore-env-after"
        script.write_text(embedded.activation_script(prefix, base.get("PATH", os.defpath), progress))
        try:
            _step(run, progress, activation.capture_argv(script, before, after), base, prefix,
                  "recording the activation (activate.d scripts)")
            recorded = activation.record(activation.read_dump(before), activation.read_dump(after))
        finally:
            for path in (before, after):
                if path.exists():
                    path.unlink()
        activation.save(prefix, recorded)

    def activation(self, prefix, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The complete environment of a process running inside ``prefix``: ``base`` (default: this process's) activated."""
        return activation.apply(activation.load(Path(prefix)), clean_environment(os.environ if base is None else base))

    def is_built(self, prefix) -> bool:
        """Whether :meth:`build` completed for ``prefix`` (its activation was recorded)."""
        return activation.record_path(Path(prefix)).is_file()

    def lock(self, spec, prefix, path, progress) -> int:
        """Write the packages of ``prefix`` to the lock file ``path``: the conda ones (URLs and hashes) and
        those pip installed from the spec (URLs with their sha256); return how many."""
        prefix = Path(prefix)
        return embedded.write_lock(prefix, settings.conda_request(spec), pip_installed(prefix), Path(path), progress)


def pip_installed(prefix: Path) -> List[dict]:
    """What the spec's pip step installed (name, version, url, sha256), from pip's report.

    An archive pip reports without a hash (a local file) is hashed here; a folder or a VCS checkout has no
    archive to hash, so it cannot be locked: :class:`InstallError`.
    """
    report = prefix / PIP_REPORT
    if not report.is_file():
        return []
    packages = []
    for item in json.loads(report.read_text()).get("install", ()):
        info = item.get("download_info") or {}
        url = info.get("url")
        if not url:
            continue
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if "archive_info" not in info:
            raise InstallError("cannot lock the pip package %s %s: it was installed from %s, a folder or a VCS "
                               "checkout with no archive to hash; install it from install_script, or from a wheel "
                               "or sdist file" % (name, version, url))
        archive = info["archive_info"]
        sha256 = archive.get("hashes", {}).get("sha256")
        if not sha256 and str(archive.get("hash", "")).startswith("sha256="):  # pip < 23.1 writes one "hash"
            sha256 = archive["hash"].split("=", 1)[1]
        url = url.split("#", 1)[0]
        if not sha256:
            path = integrity.local_path(url)
            if path is None or not os.path.isfile(path):
                raise InstallError("cannot lock the pip package %s %s: pip reported no sha256 for %s and it is not "
                                   "a file here to hash" % (name, version, url))
            sha256 = integrity.file_digest(path)
        packages.append({"name": name, "version": version, "url": url, "sha256": sha256})
    return packages


def _record_variables(prefix: Path, variables: Mapping[str, str]) -> None:
    """Record variables the way ``conda env config vars set`` does (conda-meta/state); activation sets them."""
    state = prefix / "conda-meta" / "state"
    data = json.loads(state.read_text()) if state.is_file() else {}
    data.setdefault("env_vars", {}).update(variables)
    state.write_text(json.dumps(data, indent=2))


def _step(run, progress, argv, variables, cwd, step) -> None:
    """Run one step; on failure raise an :class:`InstallError` naming it, with the last lines of its output."""
    before = progress.tail.lines()
    try:
        run(argv, variables, cwd, step)
    except InstallError as exc:
        tail = "\n".join(_lines_since(before, progress.tail.lines())[-TAIL_LINES:])
        raise InstallError("%s%s" % (exc, "\n" + textwrap.indent(tail, "  | ") if tail else "")) from None


def _lines_since(before: List[str], after: List[str]) -> List[str]:
    """The lines of the bounded tail ``after`` that came after the snapshot ``before`` (old lines drop off its start)."""
    for overlap in range(min(len(before), len(after)), 0, -1):
        if before[len(before) - overlap:] == after[:overlap]:
            return after[overlap:]
    return after
