"""The built-in ``venv`` backend: a virtual environment per spec (uv when on PATH, else venv + pip)."""
import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ..plugin.backend import BackendProvider, Command, host_environment
from ..errors import InstallError
from ..host import interpreters
from ..plugin.registry import hookimpl
from . import venv_lock


@functools.lru_cache(maxsize=None)
def find_interpreter(wanted):
    """The path of a working interpreter for version ``wanted`` (None = the host's), or None (looked up once)."""
    return interpreters.find_interpreter(wanted)


def wanted_python(spec):
    """The Python a spec asks for: its ``python``, else the ``X.Y`` its lock file was written with."""
    if spec.python:
        return spec.python
    locked = venv_lock.lock_file(spec)
    return venv_lock.locked_python(locked) if locked else None


def _no_interpreter(env):
    return interpreters.not_found_message(wanted_python(env.spec))


def _output(argv, step):
    """The standard output of ``argv``; an InstallError naming ``step`` and the last line it printed on failure."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=host_environment())
    except OSError as exc:
        raise InstallError("%s failed: %s" % (step, exc)) from None
    if out.returncode != 0:
        lines = [line for line in (out.stderr + out.stdout).splitlines() if line.strip()]
        raise InstallError("%s failed (exit code %d): %s" % (step, out.returncode, lines[-1] if lines else "no output"))
    return out.stdout


class VenvBackend(BackendProvider):
    """A virtual environment per spec, made with uv when it is on PATH, else with venv and pip."""

    name = "venv"
    description = "virtual environment per spec (uv when on PATH, else venv + pip); no C/C++ isolation"
    auto_priority = 10
    accepts_python_ranges = True
    config_schema = {"type": "object", "additionalProperties": False, "properties": {
        "lock_file": {"type": "string",
                      "description": "a lock file written by `nbcore lock`: installs exactly it, hashes checked"}}}

    def check_available(self):
        return None

    def check_spec(self, env):
        if self.is_installed(env):  # its interpreter is in the venv: no lookup (a subprocess) on every start
            return None
        return None if find_interpreter(wanted_python(env.spec)) else _no_interpreter(env)

    def identity(self, spec):
        """The content of the lock file the spec names: a changed lock makes a new environment."""
        locked = venv_lock.lock_file(spec)
        return {"lock_file": hashlib.sha256(locked.read_bytes()).hexdigest()} if locked else {}

    @staticmethod
    def python(env) -> Path:
        return env.path / "venv" / "bin" / "python"

    def worker_python(self, env):
        return str(self.python(env))

    def command(self, env, argv, variables=None, cwd=None):
        """``argv`` with the virtual environment activated (``VIRTUAL_ENV``, its ``bin`` first on ``PATH``)."""
        venv = env.path / "venv"
        environment = host_environment()
        environment.update(VIRTUAL_ENV=str(venv), PATH=str(venv / "bin") + os.pathsep + os.environ.get("PATH", ""))
        environment.update(variables or {})
        return Command(list(argv), environment, None if cwd is None else str(cwd))

    def is_installed(self, env):
        return self.python(env).exists()

    def install(self, env, progress):
        interpreter = find_interpreter(wanted_python(env.spec))
        if interpreter is None:
            raise InstallError(_no_interpreter(env))
        venv = env.path / "venv"
        uv = shutil.which("uv")
        if uv:
            progress.run([uv, "venv", "--seed", "--python", interpreter, str(venv)],
                         step="creating the virtual environment with uv")
        else:
            progress.run([interpreter, "-m", "venv", str(venv)], step="creating the virtual environment")
        locked = venv_lock.lock_file(env.spec)
        if locked:
            self._install_lock(env, locked, uv, progress)
        elif env.spec.packages:
            if uv:
                # --compile-bytecode: as pip does, so a ready env's first import does not compile
                argv = [uv, "pip", "install", "--compile-bytecode", "--python", str(self.python(env))]
            else:
                argv = [str(self.python(env)), "-m", "pip", "install", "--disable-pip-version-check"]
            progress.run(argv + list(env.spec.packages), step="installing " + " ".join(env.spec.packages))
        if env.spec.install_script:
            script = self.install_script_command(env)
            progress.run(script.argv, step="running install_script", env=script.env, cwd=script.cwd)


    def _install_lock(self, env, locked, uv, progress):
        python = str(self.python(env))
        try:
            progress.run(venv_lock.install_argv(python, uv, locked),
                         step="installing the packages of the lock file %s (hashes checked, no resolution)" % locked)
        except InstallError:
            package = venv_lock.hash_mismatch(progress.tail.lines())
            if package is None:
                raise
            written_for, running = venv_lock.locked_python(locked), interpreters.run_version(python)
            why = "the lock was edited or the index serves another file"
            if written_for and running and written_for != "%d.%d" % running[:2]:
                why = "the lock was written on Python %s, this environment runs %d.%d" % ((written_for,) + running[:2])
            raise InstallError("installing the lock file %s: the file of %s does not match its sha256 in the lock "
                               "(%s); write it again with `nbcore lock ENV`" % (locked, package, why)) from None

    def lock(self, env, path, progress):
        """Write every distribution the environment holds, pinned with its sha256, to ``path``."""
        count = venv_lock.write_lock(str(self.python(env)), shutil.which("uv"), Path(path), _output, progress)
        progress.step("wrote %d packages of %s to %s" % (count, env.name, path))


@hookimpl
def nbcore_register(register):
    register.backend(VenvBackend())
