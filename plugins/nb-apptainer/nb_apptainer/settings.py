"""The ``apptainer:`` section of an environment spec: its JSON Schema and its resolved values."""
import dataclasses
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from nbcore.plugin import nbcore_home
from nbcore.plugin.containers import (MOUNTS_SCHEMA, Mount, default_python, find_ca_bundle, nvidia_gpus_present,
                                      parse_mount)

#: Base image of generated builds; ``{python}`` becomes the spec's Python (default: the host's major.minor).
DEFAULT_BASE_IMAGE = "docker://python:{python}-slim"
#: Environment variable that replaces :data:`DEFAULT_BASE_IMAGE` (a spec's ``image`` still wins).
BASE_IMAGE_VARIABLE = "NBCORE_APPTAINER_BASE_IMAGE"
#: The generic image a spec with a ``conda:`` section runs on when its image cannot be had (or it names none).
DEFAULT_FALLBACK_IMAGE = "docker://debian:bookworm-slim"
#: Environment variable that replaces :data:`DEFAULT_FALLBACK_IMAGE` (a spec's ``fallback_image`` still wins).
FALLBACK_IMAGE_VARIABLE = "NBCORE_APPTAINER_FALLBACK_IMAGE"
#: Environment variable naming the folder of SIF files converted from remote or Docker images.
CACHE_VARIABLE = "NBCORE_APPTAINER_CACHE"
#: What ``home`` may be: a private folder of the environment, the host's home, or none at all.
HOME_CHOICES = ("private", "host", "none")

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "description": (
            "image to start from: docker://REF, docker-daemon://REF, docker-archive://FILE.tar, oras://, "
            "library://, https://, a .sif file or a sandbox folder (relative paths: to the config file); run as is "
            "when nothing needs building, else the base of the generated definition file (default: "
            "NBCORE_APPTAINER_BASE_IMAGE, then docker://python:{python}-slim)")},
        "fallback_image": {"type": "string", "description": (
            "generic image a spec with a conda section runs on, its environment built with conda (nb-conda), when "
            "`image` cannot be had or is not given (default: NBCORE_APPTAINER_FALLBACK_IMAGE, then "
            "docker://debian:bookworm-slim)")},
        "build_script": {"type": "string", "description": "shell script run as (fake)root in the image build, "
                                                         "before the Python environment is made"},
        "python_executable": {"type": "string", "description": (
            "interpreter inside a ready image (default python3); built images use /opt/nbcore-env/bin/python")},
        "gpus": {"type": "boolean", "description": (
            "pass the NVIDIA driver in (--nv: true) or not (false); default: when the host has NVIDIA GPUs")},
        "mounts": MOUNTS_SCHEMA,
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "variables set in the container"},
        "forward_env": {"type": "array", "items": {"type": "string"},
                        "description": "host variables forwarded to the container, beyond the default list"},
        "ca_bundle": {"type": ["string", "boolean"], "description": (
            "host CA bundle made available to builds and containers (default: the system bundle); false disables")},
        "home": {"enum": list(HOME_CHOICES), "description": (
            "HOME inside the container: private (an empty folder of the environment, default), host (your home "
            "with its dotfiles, Apptainer's default) or none (--no-home)")},
        "unsquash": {"type": "boolean", "description": (
            "unpack SIF images at each start (--unsquash) instead of mounting them with FUSE (slower starts)")},
        "exec_options": {"type": "array", "items": {"type": "string"},
                         "description": "extra options of `apptainer exec` (e.g. --contain)"},
    },
}


@dataclasses.dataclass(frozen=True)
class ApptainerSettings:
    """A spec's ``apptainer:`` section with every default filled in."""

    image: Optional[str]
    fallback_image: str
    build_script: Optional[str]
    python_executable: str
    gpus: Optional[bool]
    mounts: Tuple[Mount, ...]
    env: Dict[str, str]
    forward_env: Tuple[str, ...]
    ca_bundle: Optional[str]
    home: str
    unsquash: bool
    exec_options: Tuple[str, ...]

    @classmethod
    def from_spec(cls, spec) -> "ApptainerSettings":
        section = spec.section("apptainer")
        return cls(
            image=section.get("image"),
            fallback_image=section.get("fallback_image") or os.environ.get(FALLBACK_IMAGE_VARIABLE)
            or DEFAULT_FALLBACK_IMAGE,
            build_script=section.get("build_script"),
            python_executable=section.get("python_executable", "python3"),
            gpus=section.get("gpus"),
            mounts=tuple(parse_mount(m, spec.base_dir) for m in section.get("mounts", ())),
            env=dict(section.get("env", {})),
            forward_env=tuple(section.get("forward_env", ())),
            ca_bundle=find_ca_bundle(section.get("ca_bundle", True)),
            home=section.get("home", "private"),
            unsquash=section.get("unsquash", False),
            exec_options=tuple(section.get("exec_options", ())),
        )

    @property
    def wants_gpus(self) -> bool:
        """Whether the container gets the NVIDIA driver (``gpus:``, default: when the host has NVIDIA GPUs)."""
        return nvidia_gpus_present() if self.gpus is None else self.gpus


def base_image(python: Optional[str]) -> str:
    """The base image of a generated build when the spec names none."""
    template = os.environ.get(BASE_IMAGE_VARIABLE) or DEFAULT_BASE_IMAGE
    return template.replace("{python}", default_python(python))


def image_cache() -> Path:
    """The folder of SIF files converted from remote and Docker images (may be shared and read-only)."""
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(os.path.expanduser(configured)) if configured else nbcore_home() / "cache" / "apptainer" / "images"


def layer_cache() -> Path:
    """Apptainer's own cache of image layers (``APPTAINER_CACHEDIR``, else ``SINGULARITY_CACHEDIR``, else its default)."""
    configured = os.environ.get("APPTAINER_CACHEDIR") or os.environ.get("SINGULARITY_CACHEDIR")
    return Path(os.path.expanduser(configured or "~/.apptainer/cache"))
