"""The built-in ``venv`` backend: a virtual environment per spec (uv when on PATH, else venv + pip)."""
import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..plugin.backend import BackendProvider, Command, host_environment
from ..errors import InstallError
from ..plugin.registry import hookimpl
from ..spec import python_matches


def _version_of(executable):
    try:
        out = subprocess.run([executable, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not re.match(r"^\d+\.\d+\.\d+$", out.stdout.strip()):
        return None
    return tuple(int(p) for p in out.stdout.strip().split("."))


@functools.lru_cache(maxsize=None)
def find_interpreter(wanted):
    """The path of a working interpreter for version ``wanted`` (None = the host's), or None."""
    if not wanted:
        return sys.executable
    if python_matches(wanted, sys.version_info):
        return sys.executable
    major_minor = ".".join(wanted.split(".")[:2])
    seen = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        for name in ("python" + major_minor, "python" + wanted):
            candidate = os.path.join(folder, name)
            if candidate in seen or not os.access(candidate, os.X_OK):
                continue
            seen.add(candidate)
            version = _version_of(candidate)
            if version and python_matches(wanted, version):
                return candidate
    uv = shutil.which("uv")
    if uv:
        out = subprocess.run([uv, "python", "find", "--no-python-downloads", wanted],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[-1]
    return None


def _no_interpreter(env):
    return ("Python %s is not on PATH (no python%s found, uv found none); install it or use a backend that "
            "provides it: conda, docker, apptainer" % (env.spec.python, env.spec.python))


class VenvBackend(BackendProvider):
    """A virtual environment per spec, made with uv when it is on PATH, else with venv and pip."""

    name = "venv"
    description = "virtual environment per spec (uv when on PATH, else venv + pip); no C/C++ isolation"
    auto_priority = 10

    def check_available(self):
        return None

    def check_spec(self, env):
        if self.is_installed(env):  # its interpreter is in the venv: no lookup (a subprocess) on every start
            return None
        return None if find_interpreter(env.spec.python) else _no_interpreter(env)

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
        interpreter = find_interpreter(env.spec.python)
        if interpreter is None:
            raise InstallError(_no_interpreter(env))
        venv = env.path / "venv"
        uv = shutil.which("uv")
        if uv:
            progress.run([uv, "venv", "--seed", "--python", interpreter, str(venv)],
                         step="creating the virtual environment with uv")
        else:
            progress.run([interpreter, "-m", "venv", str(venv)], step="creating the virtual environment")
        if env.spec.packages:
            if uv:
                # --compile-bytecode: as pip does, so a ready env's first import does not compile
                argv = [uv, "pip", "install", "--compile-bytecode", "--python", str(self.python(env))]
            else:
                argv = [str(self.python(env)), "-m", "pip", "install", "--disable-pip-version-check"]
            progress.run(argv + list(env.spec.packages), step="installing " + " ".join(env.spec.packages))
        if env.spec.install_script:
            script = self.install_script_command(env)
            progress.run(script.argv, step="running install_script", env=script.env, cwd=script.cwd)


@hookimpl
def nbcore_register(register):
    register.backend(VenvBackend())
