"""What every container backend needs, whatever its engine (Docker, Apptainer, ...).

Bind mounts and their ``SRC[:DST][:ro]`` notation, the host variables a
container gets, the host CA bundle, NVIDIA GPU detection, a neutral
:class:`BuildRecipe` of an image that holds a spec's Python environment, which
each engine renders in its own format (a Dockerfile, a definition file), and the
settings of the registry of published environment images, which every engine
that runs those images applies alike.
"""
import dataclasses
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ..errors import UserError
from ..private_cache import private_folder
from ..worker.serve import BYTECODE_VARIABLE

#: Host variables a container gets when they are set: GPU selection, threads, proxies, pip, terminal.
FORWARDED_VARIABLES = (
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST",
    "TERM", "TZ",
)
#: The proxy settings among them, which image builds need too.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

#: Where the host's CA bundle appears inside builds and containers.
CA_TARGET = "/etc/nbcore/ca-certificates.crt"
#: The variables that point pip, OpenSSL and requests at :data:`CA_TARGET`.
CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
_CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")

#: The virtual environment a built image holds; the worker runs its interpreter.
ENV_PREFIX = "/opt/nbcore-env"
ENV_PYTHON = ENV_PREFIX + "/bin/python"
#: Where a build's scripts are copied inside the image.
BUILD_DIR = "/nbcore-build"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VERSION_CHECK = (
    "import sys; w = %r; v = '%%d.%%d.%%d' %% sys.version_info[:3]; "
    "sys.exit(0 if (v + '.').startswith(w + '.') else 'nbcore: the base image has Python %%s but the spec asks "
    "for %%s: pick a base image with that Python%s' %% (v, w))"
)


@dataclasses.dataclass(frozen=True)
class Mount:
    """A bind mount: host ``source`` at ``target`` in the container."""

    source: str
    target: str
    read_only: bool = False


def worker_bytecode(env_path: Path) -> Tuple[Mount, Dict[str, str]]:
    """The writable mount and the variable with which a worker whose code is mounted read-only keeps the bytecode
    of its own modules between starts, in ``worker-bytecode`` of the environment's folder ``env_path`` (made here).

    Without them, a container whose Python differs from every worker that ran on the host compiles the worker's
    modules at every start.  The folder is the environment's own, so what one environment writes there reaches no
    other.  The worker loads what it finds there, so the folder is this user's alone whatever the umask, and one
    another user could have written into is replaced.
    """
    folder = Path(env_path) / "worker-bytecode"
    private_folder(folder)
    return Mount(str(folder), str(folder)), {BYTECODE_VARIABLE: str(folder)}


def parse_mount(text: str, base_dir: Optional[str]) -> Mount:
    """``PATH``, ``SRC:DST`` or ``SRC:DST:ro|rw``; ``~`` and relative sources are resolved on the host
    (relative to ``base_dir``, the config file's folder)."""
    parts = text.split(":")
    mode = parts.pop() if len(parts) > 1 and parts[-1] in ("ro", "rw") else "rw"
    source = Path(os.path.expanduser(parts[0]))
    if not source.is_absolute():
        source = Path(base_dir or os.getcwd()) / source
    source = str(source.resolve())
    return Mount(source, parts[1] if len(parts) > 1 else source, mode == "ro")


#: JSON Schema of a list of mounts in a spec section.
MOUNTS_SCHEMA = {"type": "array", "items": {"type": "string", "pattern": r"^[^:]+(:[^:]+)?(:(ro|rw))?$",
                                           "description": "PATH or SRC:DST[:ro|rw]"},
                 "description": "extra bind mounts: PATH (same path inside), or SRC:DST[:ro|rw]; "
                                "relative SRC is relative to the config file"}


def deduplicate_mounts(mounts) -> List[Mount]:
    """Keep the last mount of each target (a user mount replaces a default one)."""
    by_target = {}
    for mount in mounts:
        by_target.pop(mount.target, None)
        by_target[mount.target] = mount
    return list(by_target.values())


def forwarded_environment(extra_names=()) -> Dict[str, str]:
    """The host variables a container gets: :data:`FORWARDED_VARIABLES` plus ``extra_names``, when set."""
    return {name: os.environ[name] for name in FORWARDED_VARIABLES + tuple(extra_names) if name in os.environ}


def proxy_variables() -> Dict[str, str]:
    """The host's proxy settings (for builds)."""
    return {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}


def find_ca_bundle(value: Union[bool, str, None] = True) -> Optional[str]:
    """The host CA bundle to share: ``True`` = the system one when present, a path = that file, ``False`` = none."""
    if value is False:
        return None
    if isinstance(value, str):
        return os.path.expanduser(value)
    return next((p for p in _CA_CANDIDATES if os.path.isfile(p)), None)


def nvidia_gpus_present() -> bool:
    """Whether the host has NVIDIA GPUs (a ``/dev/nvidiaN`` device)."""
    return any(p.name[len("nvidia"):].isdigit() for p in Path("/dev").glob("nvidia*"))


def default_python(python: Optional[str]) -> str:
    """The ``major.minor`` an image should have for a spec's ``python`` (default: the host's)."""
    wanted = python or "%d.%d" % sys.version_info[:2]
    return ".".join(wanted.split(".")[:2])


@dataclasses.dataclass(frozen=True)
class Run:
    """A build step: ``argv`` run directly, or ``script`` (a file of the recipe) run with bash, else sh."""

    argv: Tuple[str, ...] = ()
    script: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SetEnv:
    """A build step: variables the image keeps from here on (a ``$NAME`` in a value expands as in a shell)."""

    variables: Tuple[Tuple[str, str], ...]


@dataclasses.dataclass
class BuildRecipe:
    """An image, neutrally: a base, files to add, variables for the build only, and steps.

    Engines render it (a Dockerfile, a definition file); no field is engine-specific.
    """

    base: str
    #: Path inside the image -> (content, mode).
    files: Dict[str, Tuple[bytes, int]] = dataclasses.field(default_factory=dict)
    #: Variables set while building only (not kept in the image): the CA bundle's, proxies are added by engines.
    build_variables: Dict[str, str] = dataclasses.field(default_factory=dict)
    steps: List[Union[Run, SetEnv]] = dataclasses.field(default_factory=list)


def python_environment_recipe(spec, base: str, python_executable: str, ca_bundle: Optional[str],
                              build_script: Optional[str], base_hint: str = "") -> BuildRecipe:
    """The image that holds ``spec``'s Python environment on top of ``base``.

    Steps: the host CA bundle (for the build only), ``build_script`` as root,
    a virtual environment in :data:`ENV_PREFIX` that sees the base image's
    site-packages, a check of the Python version, ``packages`` with pip, then
    ``install_script`` with the environment activated.  ``base_hint`` ends the
    message of a failed version check (where the user picks the base image).
    """
    recipe = BuildRecipe(base=base)
    if ca_bundle:
        with open(ca_bundle, "rb") as f:
            recipe.files[CA_TARGET] = (f.read(), 0o644)
        recipe.build_variables.update((name, CA_TARGET) for name in CA_VARIABLES)
    for name, text in (("build_script.sh", build_script), ("install_script.sh", spec.install_script)):
        if text:
            recipe.files[BUILD_DIR + "/" + name] = (text.encode(), 0o755)
    if build_script:
        recipe.steps.append(Run(script=BUILD_DIR + "/build_script.sh"))
    recipe.steps.append(Run((python_executable, "-m", "venv", "--system-site-packages", ENV_PREFIX)))
    recipe.steps.append(SetEnv((("VIRTUAL_ENV", ENV_PREFIX), ("PATH", "%s/bin:${PATH:-%s}" % (ENV_PREFIX, DEFAULT_PATH)))))
    if spec.python:
        recipe.steps.append(Run((ENV_PYTHON, "-c", _VERSION_CHECK % (spec.python, base_hint))))
    if spec.packages:
        recipe.steps.append(Run((ENV_PYTHON, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check")
                                + tuple(spec.packages)))
    if spec.install_script:
        recipe.steps.append(Run(script=BUILD_DIR + "/install_script.sh"))
    return recipe



#: Registry of published environment images; wins over a backend section's ``registry`` and the config's.
REGISTRY_VARIABLE = "NBCORE_REGISTRY"
#: What installs do with the registry (:data:`PULL_POLICIES`): a per-user choice, so no spec key (no hash change).
PULL_VARIABLE = "NBCORE_REGISTRY_PULL"
PULL_POLICIES = {
    "auto": "pull the published image; build when the registry does not have it; any other failure is an error",
    "fallback": "as auto, but build also when the registry cannot be asked (login, network)",
    "required": "pull the published image; never build",
    "never": "do not ask the registry; build",
}


def configured_registry(spec, section_registry: Optional[str] = None) -> Optional[str]:
    """The registry of ``spec``'s published image: ``NBCORE_REGISTRY``, else ``section_registry`` (a backend
    section's own ``registry``), else the config's top-level ``registry:``; None when none is set."""
    return (os.environ.get(REGISTRY_VARIABLE) or section_registry or spec.registry or "").rstrip("/") or None


def pull_policy() -> str:
    """``NBCORE_REGISTRY_PULL`` (default ``auto``); a value not in :data:`PULL_POLICIES` is a :class:`UserError`."""
    policy = os.environ.get(PULL_VARIABLE) or "auto"
    if policy not in PULL_POLICIES:
        raise UserError("%s=%s is not a pull policy (use one of: %s)" % (PULL_VARIABLE, policy, ", ".join(PULL_POLICIES)))
    return policy


#: Registry failures any engine reports in the same words (lower case, as Go's network errors read), and what to
#: do about them; engines add their own (logins, plain http) in front.
UNREACHABLE_REGISTRY = (
    ("connection refused", "cannot reach the registry (connection refused): is it running, is the address right?"),
    ("no such host", "cannot reach the registry (unknown host): check the address"),
    ("timeout", "cannot reach the registry (timed out)"),
    ("timed out", "cannot reach the registry (timed out)"),
)
