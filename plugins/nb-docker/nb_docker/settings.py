"""The ``docker:`` section of an environment spec: its JSON Schema and its resolved values."""
import dataclasses
import os
from typing import Dict, Optional, Tuple

from nbcore.plugin.containers import (MOUNTS_SCHEMA, Mount, default_python, find_ca_bundle, nvidia_gpus_present,
                                      parse_mount)

#: Base image of generated builds; ``{python}`` becomes the spec's Python (default: the host's major.minor).
DEFAULT_BASE_IMAGE = "python:{python}-slim"
#: Environment variable that replaces :data:`DEFAULT_BASE_IMAGE` (a spec's ``image`` still wins).
BASE_IMAGE_VARIABLE = "NBCORE_DOCKER_BASE_IMAGE"

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
        "mounts": MOUNTS_SCHEMA,
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "variables set in the worker container"},
        "forward_env": {"type": "array", "items": {"type": "string"},
                        "description": "host variables forwarded to the container, beyond the default list"},
        "ca_bundle": {"type": ["string", "boolean"], "description": (
            "host CA bundle made available to builds and containers (default: the system bundle); false disables")},
        "pip_cache": {"type": "boolean", "description": "mount a pip cache into the worker container (default true)"},
        "registry": {"type": "string", "pattern": r"^[^\s/]+(/[^\s/]+)*$", "description": (
            "registry (HOST[:PORT][/PATH]) of this environment's published image; NBCORE_REGISTRY overrides it, "
            "it overrides the config's top-level registry")},
        "build_args": {"type": "object", "additionalProperties": {"type": "string"}, "description": (
            "variables set while building the image only (e.g. TORCH_CUDA_ARCH_LIST for a build on a machine "
            "without the target GPU); part of the image's hash")},
        "ulimits": {"type": "object", "additionalProperties": {"type": ["integer", "null"]}, "description": (
            "resource limits of the worker container, soft = hard, -1 = unlimited; null drops a default "
            "(default: memlock -1, stack 67108864, each lowered to what a local daemon may grant)")},
        "model_caches": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
                                                            "description": "a variable name"},
                         "description": (
            "variables naming model caches, each pointed at a host folder under NBCORE_HOME so downloaded "
            "weights persist between runs (default: TORCH_HOME, HF_HOME)")},
    },
}

#: Keys of the section that change what the image holds; the others only change how it runs.
BUILD_KEYS = ("image", "build_script", "python_executable", "build_args")
#: Resource limits of worker containers unless the spec says otherwise (what GPU training code needs).
DEFAULT_ULIMITS = {"memlock": -1, "stack": 67108864}
DEFAULT_MODEL_CACHES = ("TORCH_HOME", "HF_HOME")


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
    registry: Optional[str]
    build_args: Dict[str, str]
    #: The spec's ``ulimits`` (None drops a default); :func:`worker_ulimits` adds the defaults.
    ulimits: Dict[str, Optional[int]]
    model_caches: Tuple[str, ...]

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
            ca_bundle=find_ca_bundle(section.get("ca_bundle", True)),
            pip_cache=section.get("pip_cache", True),
            registry=section.get("registry"),
            build_args=dict(section.get("build_args", {})),
            ulimits=dict(section.get("ulimits", {})),
            model_caches=tuple(section.get("model_caches", DEFAULT_MODEL_CACHES)),
        )


def base_image(python: Optional[str]) -> str:
    """The base image of a generated build when the spec names none."""
    template = os.environ.get(BASE_IMAGE_VARIABLE) or DEFAULT_BASE_IMAGE
    return template.replace("{python}", default_python(python))


def resolve_user(value: str) -> str:
    """``uid:gid`` for the container (``auto`` = the invoking user's)."""
    if value == "auto":
        return "%d:%d" % (os.getuid(), os.getgid())
    if value == "root":
        return "0:0"
    return value if ":" in value else "%s:%s" % (value, value)


def worker_ulimits(settings: DockerSettings, ceilings: Dict[str, int]) -> Dict[str, int]:
    """The container's resource limits: the spec's, plus each default the spec does not name, lowered to its
    ``ceilings`` entry (the most the daemon may grant; -1 = unlimited)."""
    limits = {}
    for name, value in DEFAULT_ULIMITS.items():
        ceiling = ceilings.get(name, -1)
        limits[name] = value if ceiling == -1 or 0 <= value <= ceiling else ceiling
    limits.update(settings.ulimits)
    return {name: value for name, value in limits.items() if value is not None}


def wants_gpus(settings: DockerSettings) -> bool:
    """Whether the container gets the host's GPUs (``gpus:``, default: when the host has NVIDIA GPUs)."""
    return nvidia_gpus_present() if settings.gpus is None else settings.gpus

