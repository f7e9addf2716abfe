"""Activation computed once, at install, and replayed on every start.

Activating a conda environment means running rattler's activation script in bash:
it sets PATH, CONDA_PREFIX and the environment's recorded variables, and sources
every ``etc/conda/activate.d/*.sh`` (compiler and CUDA packages set their
variables there).  Doing that on each worker start costs a bash and the scripts;
instead :func:`capture_argv` runs it once, dumping the environment before and
after, :func:`record` keeps what changed, and :func:`apply` replays it on
whatever environment a later start has.  A variable that a script extended (PATH
gets ``PREFIX/bin`` in front) is kept as the text around the old value, so the
later environment's own value goes back in between.
"""
import json
import os
from pathlib import Path
from typing import Dict, List, Mapping

#: Where a prefix keeps its recorded activation (beside conda's own records).
RECORD_FILE = "conda-meta/nbcore-activation"  # no .json: conda-meta/*.json are package records
#: What bash itself changes, not the activation.
_SHELL_VARIABLES = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})


def record_path(prefix: Path) -> Path:
    return Path(prefix) / RECORD_FILE


def capture_argv(script: Path, before: Path, after: Path) -> List[str]:
    """A bash command that writes the environment (NUL-separated) to ``before``, activates, then writes ``after``."""
    return ["bash", "-c", 'env -0 > "$1" && . "$2" >&2 && env -0 > "$3"', "bash", str(before), str(script), str(after)]


def read_dump(path: Path) -> Dict[str, str]:
    """Parse an ``env -0`` dump."""
    out = {}
    for entry in Path(path).read_bytes().decode("utf-8", "surrogateescape").split("\0"):
        name, sep, value = entry.partition("=")
        if sep and name:
            out[name] = value
    return out


def _split_around(value: str, old: str):
    """``[head, tail]`` when ``old`` is a whole ``os.pathsep`` segment run inside ``value``, else None."""
    start = 0
    while True:
        at = value.find(old, start)
        if at < 0:
            return None
        end = at + len(old)
        if (at == 0 or value[at - 1] == os.pathsep) and (end == len(value) or value[end] == os.pathsep):
            return [value[:at], value[end:]]
        start = at + 1


def record(before: Mapping[str, str], after: Mapping[str, str]) -> dict:
    """What activation changed: ``{"set": {name: value or [head, tail]}, "unset": [names]}``."""
    changed = {}
    for name, value in after.items():
        if name in _SHELL_VARIABLES or before.get(name) == value:
            continue
        old = before.get(name)
        around = _split_around(value, old) if old else None
        changed[name] = around if around is not None else value
    unset = sorted(n for n in before if n not in after and n not in _SHELL_VARIABLES)
    return {"set": changed, "unset": unset}


def _join(head: str, middle: str, tail: str) -> str:
    if middle:
        return head + middle + tail
    head = head[:-1] if head.endswith(os.pathsep) else head
    tail = tail[1:] if tail.startswith(os.pathsep) else tail
    return head + (os.pathsep if head and tail else "") + tail


def apply(recorded: dict, base: Mapping[str, str]) -> Dict[str, str]:
    """``base`` with the recorded activation applied (a new dict)."""
    env = dict(base)
    for name in recorded.get("unset", ()):
        env.pop(name, None)
    for name, value in recorded.get("set", {}).items():
        env[name] = _join(value[0], base.get(name, ""), value[1]) if isinstance(value, list) else value
    return env


def save(prefix: Path, recorded: dict) -> None:
    path = record_path(prefix)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    os.replace(tmp, path)


def load(prefix: Path) -> dict:
    return json.loads(record_path(prefix).read_text())
