"""The container a worker (or ``nbcore shell``) runs in, and its rendering for docker-py and the CLI."""
import dataclasses
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import docker.types
from nbcore.plugin.containers import (CA_TARGET, CA_VARIABLES, Mount, deduplicate_mounts, forwarded_environment,
                                      worker_bytecode)

from .engine import ulimit_ceilings
from .settings import DockerSettings, resolve_user, wants_gpus, worker_ulimits

#: Inside the container: pip's cache (a host folder under ``NBCORE_HOME``) and HOME for users without one.
PIP_CACHE_TARGET = "/tmp/nbcore-pip-cache"
#: Inside the container: the folder of each model cache variable (``/tmp/nbcore-cache/TORCH_HOME``).
MODEL_CACHE_TARGET = "/tmp/nbcore-cache"
HOME_FOR_UNKNOWN_USER = "/tmp"
LABEL_ROLE = "org.nbcore.role"


@dataclasses.dataclass
class ContainerConfig:
    """Everything ``docker run`` needs for one worker or shell container."""

    image: str
    command: List[str]
    user: str
    environment: Dict[str, str]
    mounts: Tuple[Mount, ...]
    working_dir: Optional[str]
    gpus: bool
    labels: Dict[str, str]
    #: Resource limits by name (``memlock``), soft = hard; -1 = unlimited.
    ulimits: Dict[str, int] = dataclasses.field(default_factory=dict)

    def create_kwargs(self, api) -> dict:
        """Arguments for ``APIClient.create_container`` (removed on exit, host IPC and network)."""
        host_config = api.create_host_config(
            mounts=[docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in self.mounts],
            ipc_mode="host", network_mode="host", auto_remove=True, init=True,
            device_requests=[docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if self.gpus else None,
            ulimits=[docker.types.Ulimit(name=name, soft=value, hard=value) for name, value in sorted(self.ulimits.items())],
        )
        return dict(image=self.image, command=self.command, user=self.user, environment=self.environment,
                    working_dir=self.working_dir, labels=self.labels, host_config=host_config,
                    stdin_open=False, tty=False)

    def cli_argv(self, docker_cli: str, interactive: bool) -> List[str]:
        """``docker run`` arguments; values of variables stay out of argv (``-e NAME`` reads the CLI's environment)."""
        argv = [docker_cli, "run", "--rm", "-i", "--init", "--ipc", "host", "--network", "host", "--user", self.user]
        if self.working_dir:
            argv += ["--workdir", self.working_dir]
        if interactive:
            argv.append("-t")
        for mount in self.mounts:
            argv += ["--mount", _mount_option(mount)]
        for name in sorted(self.environment):
            argv += ["--env", name]
        for key, value in sorted(self.labels.items()):
            argv += ["--label", "%s=%s" % (key, value)]
        for name, value in sorted(self.ulimits.items()):
            argv += ["--ulimit", "%s=%d:%d" % (name, value, value)]
        if self.gpus:
            argv += ["--gpus", "all"]
        return argv + [self.image] + self.command


def container_config(env, settings: DockerSettings, image: str, command: List[str], variables: Dict[str, str],
                     cwd: Optional[Path], home: Path, role: str, worker_path: Optional[Path] = None) -> ContainerConfig:
    """The container for ``env``: same-path mounts of ``cwd`` (also the working directory; None: the image's)
    and of the worker code, the user's mounts, the CA bundle, pip and model caches, forwarded and declared
    variables, then ``variables``."""
    mounts, worker = [], {}
    if worker_path is not None:
        worker_folder = str(Path(worker_path).resolve())
        mounts.append(Mount(worker_folder, worker_folder, read_only=True))
        if settings.user == resolve_user("auto"):  # another uid's files would stay behind in the environment's folder
            bytecode_mount, worker = worker_bytecode(env.path)
            mounts.append(bytecode_mount)
    working_dir = None if cwd is None else str(Path(cwd).resolve())
    if working_dir not in (None, "/"):
        mounts.append(Mount(working_dir, working_dir))
    environment = forwarded_environment(settings.forward_env)
    if settings.user != "0:0":
        environment["HOME"] = HOME_FOR_UNKNOWN_USER
    if settings.ca_bundle:
        mounts.append(Mount(os.path.realpath(settings.ca_bundle), CA_TARGET, read_only=True))
        environment.update((name, CA_TARGET) for name in CA_VARIABLES)
    if settings.pip_cache:
        mounts.append(Mount(str(cache_folder(home, settings.user, "docker-pip")), PIP_CACHE_TARGET))
        environment["PIP_CACHE_DIR"] = PIP_CACHE_TARGET
    for variable in settings.model_caches:
        target = "%s/%s" % (MODEL_CACHE_TARGET, variable)
        mounts.append(Mount(str(cache_folder(home, settings.user, "docker-models", variable)), target))
        environment[variable] = target
    mounts += settings.mounts
    environment.update(settings.env)
    environment.update(worker)
    environment.update(variables)
    return ContainerConfig(
        image=image, command=command, user=settings.user, environment=environment,
        mounts=tuple(deduplicate_mounts(mounts)), working_dir=working_dir, gpus=wants_gpus(settings),
        labels={"org.nbcore.env": env.name, LABEL_ROLE: role}, ulimits=worker_ulimits(settings, ulimit_ceilings()),
    )


def cache_folder(home: Path, user: str, kind: str, *name: str) -> Path:
    """The host folder ``NBCORE_HOME/cache/KIND/UID[/NAME]`` mounted as a cache: one per container uid, owned by it."""
    uid, gid = (int(part) for part in user.split(":"))
    folder = Path(home, "cache", kind, str(uid), *name)
    folder.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0 and (folder.stat().st_uid, folder.stat().st_gid) != (uid, gid):
        os.chown(folder, uid, gid)
    return folder


def _mount_option(mount: Mount) -> str:
    """``--mount`` value of a bind mount; a path holding ``,`` or ``"`` is quoted as CSV (any ``:`` is fine)."""
    fields = ["type=bind", "source=" + mount.source, "target=" + mount.target] + (["readonly"] if mount.read_only else [])
    return ",".join('"%s"' % f.replace('"', '""') if ("," in f or '"' in f) else f for f in fields)
