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
    },
}


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
            ca_bundle=find_ca_bundle(section.get("ca_bundle", True)),
            pip_cache=section.get("pip_cache", True),
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


def wants_gpus(settings: DockerSettings) -> bool:
    """Whether the container gets the host's GPUs (``gpus:``, default: when the host has NVIDIA GPUs)."""
    return nvidia_gpus_present() if settings.gpus is None else settings.gpus

