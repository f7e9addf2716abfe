"""The ``docker:`` section of an environment spec: its JSON Schema and its resolved values."""
import dataclasses
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

#: Base image of generated builds; ``{python}`` becomes the spec's Python (default: the host's major.minor).
DEFAULT_BASE_IMAGE = "python:{python}-slim"
#: Environment variable that replaces :data:`DEFAULT_BASE_IMAGE` (a spec's ``image`` still wins).
BASE_IMAGE_VARIABLE = "NBCORE_DOCKER_BASE_IMAGE"

#: Host variables every worker container gets when they are set (GPU selection, threads, proxies, pip).
FORWARDED_VARIABLES = (
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST",
    "TERM", "TZ",
)
#: Proxy variables passed to builds as build arguments.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

#: Where the host's CA bundle appears inside builds and containers.
CA_TARGET = "/etc/nbcore/ca-certificates.crt"
_CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "description": (
            "image to start from: run as is (pulled when missing) when nothing needs building, else the base of "
            "the generated Dockerfile (default: NBCORE_DOCKER_BASE_IMAGE, then python:{python}-slim)")},
        "build_script": {"type": "string", "description": "shell script run as root in the image build, "
                                                         "before the Python environment is made (apt-get ...)"},
        "python_executable": {"type": "string", "description": (
            "interpreter inside a ready image (default python3); built images use /opt/nbcore-env/bin/python")},
        "user": {"type": "string", "pattern": r"^(auto|root|\d+(:\d+)?)$", "description": (
            "who the worker runs as: auto (the invoking uid:gid, default), root, or UID[:GID]")},
        "gpus": {"type": "boolean", "description": (
            "request all GPUs (true) or none (false); default: all when the host has NVIDIA GPUs")},
        "mounts": {"type": "array", "items": {"type": "string", "pattern": r"^[^:]+(:[^:]+)?(:(ro|rw))?$"},
                   "description": "extra bind mounts: PATH (same path inside), or SRC:DST[:ro|rw]; "
                                  "relative SRC is relative to the config file"},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "variables set in the worker container"},
        "forward_env": {"type": "array", "items": {"type": "string"},
                        "description": "host variables forwarded to the container, beyond the default list"},
        "ca_bundle": {"type": ["string", "boolean"], "description": (
            "host CA bundle made available to builds and containers (default: the system bundle); false disables")},
        "pip_cache": {"type": "boolean", "description": "mount a pip cache into the worker container (default true)"},
    },
}


@dataclasses.dataclass(frozen=True)
class Mount:
    """A bind mount: host ``source`` at ``target`` in the container."""

    source: str
    target: str
    read_only: bool = False


@dataclasses.dataclass(frozen=True)
class DockerSettings:
    """A spec's ``docker:`` section with every default filled in."""

    image: Optional[str]
    build_script: Optional[str]
    python_executable: str
    user: str
    gpus: Optional[bool]
    mounts: Tuple[Mount, ...]
    env: Dict[str, str]
    forward_env: Tuple[str, ...]
    ca_bundle: Optional[str]
    pip_cache: bool

    @classmethod
    def from_spec(cls, spec) -> "DockerSettings":
        section = spec.section("docker")
        return cls(
            image=section.get("image"),
            build_script=section.get("build_script"),
            python_executable=section.get("python_executable", "python3"),
            user=resolve_user(section.get("user", "auto")),
            gpus=section.get("gpus"),
            mounts=tuple(parse_mount(m, spec.base_dir) for m in section.get("mounts", ())),
            env=dict(section.get("env", {})),
            forward_env=tuple(section.get("forward_env", ())),
            ca_bundle=resolve_ca_bundle(section.get("ca_bundle", True)),
            pip_cache=section.get("pip_cache", True),
        )


def base_image(python: Optional[str]) -> str:
    """The base image of a generated build when the spec names none."""
    template = os.environ.get(BASE_IMAGE_VARIABLE) or DEFAULT_BASE_IMAGE
    wanted = python or "%d.%d" % sys.version_info[:2]
    return template.replace("{python}", ".".join(wanted.split(".")[:2]))


def resolve_user(value: str) -> str:
    """``uid:gid`` for the container (``auto`` = the invoking user's)."""
    if value == "auto":
        return "%d:%d" % (os.getuid(), os.getgid())
    if value == "root":
        return "0:0"
    return value if ":" in value else "%s:%s" % (value, value)


def parse_mount(text: str, base_dir: Optional[str]) -> Mount:
    """``PATH``, ``SRC:DST`` or ``SRC:DST:ro|rw``; ``~`` and relative sources are resolved on the host."""
    parts = text.split(":")
    mode = parts.pop() if len(parts) > 1 and parts[-1] in ("ro", "rw") else "rw"
    source = Path(os.path.expanduser(parts[0]))
    if not source.is_absolute():
        source = Path(base_dir or os.getcwd()) / source
    source = str(source.resolve())
    return Mount(source, parts[1] if len(parts) > 1 else source, mode == "ro")


def resolve_ca_bundle(value) -> Optional[str]:
    """The host CA bundle to share (``True`` = the system one, when present; ``False`` = none)."""
    if value is False:
        return None
    if isinstance(value, str):
        return os.path.expanduser(value)
    return next((p for p in _CA_CANDIDATES if os.path.isfile(p)), None)


def forwarded_environment(settings: DockerSettings) -> Dict[str, str]:
    """The host variables the container gets: the default list plus ``forward_env``."""
    names = FORWARDED_VARIABLES + settings.forward_env
    return {name: os.environ[name] for name in names if name in os.environ}


def proxy_build_args() -> Dict[str, str]:
    """The host's proxy settings, as build arguments."""
    return {name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ}


def gpu_devices_present() -> bool:
    """Whether the host has NVIDIA GPUs (a ``/dev/nvidiaN`` device)."""
    return any(p.name[len("nvidia"):].isdigit() for p in Path("/dev").glob("nvidia*"))


def wants_gpus(settings: DockerSettings) -> bool:
    return gpu_devices_present() if settings.gpus is None else settings.gpus

