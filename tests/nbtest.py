"""Helpers shared by nbcore's own test modules (``from nbtest import ...``)."""
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Variables that change what nbcore picks; a developer's shell must not leak them into the suite.
SELECTION_VARIABLES = (
    "NBCORE_BACKEND", "NERFBASELINES_BACKEND", "NBCORE_PROTOCOL", "NERFBASELINES_PROTOCOL",
    "NBCORE_CONFIG", "NBCORE_PICKLE_PROTOCOL_MAX", "NBCORE_CONNECT_TIMEOUT",
)

#: Whether nb-shm is installed: with it, host and worker upgrade to shm-pickle on this (Linux) machine.
SHM_INSTALLED = importlib.util.find_spec("nb_shm") is not None


def write(path, text):
    """Write dedented ``text`` to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def clean_environ(extra=None):
    """``os.environ`` without the selection variables, plus ``extra``."""
    variables = {k: v for k, v in os.environ.items() if k not in SELECTION_VARIABLES}
    variables.update(extra or {})
    return variables


def run_nbcore(*args, cwd=None, env=None, timeout=300, python=None):
    """Run ``python -m nbcore ARGS`` and return the CompletedProcess (text mode).

    ``env`` adds variables to a copy of ``os.environ`` cleaned of the selection variables.
    """
    return subprocess.run([python or sys.executable, "-m", "nbcore"] + [str(a) for a in args],
                          cwd=None if cwd is None else str(cwd), env=clean_environ(env),
                          capture_output=True, text=True, timeout=timeout)


def pid_alive(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"
