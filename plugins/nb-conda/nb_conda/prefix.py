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
from typing import Callable, Dict, Mapping, Optional

from nbcore.plugin import InstallError

from . import activation, embedded, engines, settings

Runner = Callable[..., None]
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


class CondaPrefixBuilder:
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
        if request.pip:
            _step(run, progress, [str(prefix / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                                  *request.pip], env, request.base_dir, "installing pip packages " + " ".join(request.pip))
        if request.install_script:
            _step(run, progress, ["bash", "-eo", "pipefail", "-c", request.install_script], env, request.base_dir,
                  "running install_script")

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
        """Write the conda packages of ``prefix`` (URLs and hashes) to the lock file ``path``; return how many."""
        return embedded.write_lock(Path(prefix), settings.conda_request(spec), Path(path), progress)


def _record_variables(prefix: Path, variables: Mapping[str, str]) -> None:
    """Record variables the way ``conda env config vars set`` does (conda-meta/state); activation sets them."""
    state = prefix / "conda-meta" / "state"
    data = json.loads(state.read_text()) if state.is_file() else {}
    data.setdefault("env_vars", {}).update(variables)
    state.write_text(json.dumps(data, indent=2))


def _step(run, progress, argv, variables, cwd, step) -> None:
    """Run one step; on failure raise an :class:`InstallError` naming it, with the last lines of its output."""
    progress.tail.clear()
    try:
        run(argv, variables, cwd, step)
    except InstallError as exc:
        tail = "\n".join(list(progress.tail)[-TAIL_LINES:])
        raise InstallError("%s%s" % (exc, "\n" + textwrap.indent(tail, "  | ") if tail else "")) from None
