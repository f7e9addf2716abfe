"""The ``apptainer exec`` command a worker, an install step or ``nbcore shell`` runs with.

Only what is listed reaches the container: ``--cleanenv`` drops the host
environment, the variables go in as ``APPTAINERENV_NAME`` (values never in argv)
and ``--no-eval`` keeps the container's shell from evaluating them.  The working
directory and the worker code are bound at their host paths; ``/dev/shm`` and the
network are the host's (Apptainer's defaults), so shm-pickle and tcp on 127.0.0.1 work.
"""
import errno
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from nbcore.plugin import BackendUnavailable, Command, host_environment
from nbcore.plugin.containers import (CA_TARGET, CA_VARIABLES, Mount, deduplicate_mounts, forwarded_environment,
                                      worker_bytecode)

from .settings import ApptainerSettings

#: The private HOME of ``home: private``, inside an environment's folder.
PRIVATE_HOME = "home"
#: Programs Apptainer mounts SIF images with when it runs unprivileged.
SQUASHFUSE = ("squashfuse_ll", "squashfuse")


def exec_command(engine, settings: ApptainerSettings, image: str, argv: List[str], variables: Dict[str, str],
                 cwd: Optional[Path], env_path: Path, worker_path: Optional[Path] = None, is_sif: bool = True,
                 mounts: Sequence[Mount] = ()) -> Command:
    """``apptainer exec`` of ``argv`` in ``image`` with the settings' binds, home, GPUs and variables, and
    ``mounts`` (before the user's)."""
    if is_sif and not settings.unsquash:
        check_fuse()
    options = ["--cleanenv", "--no-eval"]
    mounts, worker = list(mounts), {}
    if worker_path is not None:
        worker_folder = str(Path(worker_path).resolve())
        mounts.append(Mount(worker_folder, worker_folder, read_only=True))
        bytecode_mount, worker = worker_bytecode(env_path)
        mounts.append(bytecode_mount)
    working_dir = None if cwd is None else str(Path(cwd).resolve())
    if working_dir is not None:
        options += ["--pwd", working_dir]
        if working_dir != "/":
            mounts.append(Mount(working_dir, working_dir))
    environment = forwarded_environment(settings.forward_env)
    if settings.ca_bundle:
        mounts.append(Mount(os.path.realpath(settings.ca_bundle), CA_TARGET, read_only=True))
        environment.update((name, CA_TARGET) for name in CA_VARIABLES)
    mounts += settings.mounts
    environment.update(settings.env)
    environment.update(worker)
    environment.update(variables)
    if settings.home == "private":
        home = env_path / PRIVATE_HOME
        home.mkdir(parents=True, exist_ok=True)
        options += ["--home", "%s:%s" % (home, os.path.expanduser("~"))]
    elif settings.home == "none":
        options.append("--no-home")
    if settings.wants_gpus:
        options.append("--nv")
    if settings.unsquash and is_sif:
        options.append("--unsquash")
    for mount in deduplicate_mounts(mounts):
        options += bind_option(mount)
    options += list(settings.exec_options)
    process_env = host_environment()
    process_env.update((engine.env_prefix + name, value) for name, value in environment.items())
    return Command([engine.executable, "--quiet", "exec"] + options + [image] + list(argv), process_env, working_dir)


def bind_option(mount: Mount) -> List[str]:
    """``--bind SRC:DST[:ro]``, or ``--mount`` (CSV, quoted) for a path holding ``:`` or ``,``."""
    if not any(c in path for path in (mount.source, mount.target) for c in ":,"):
        return ["--bind", "%s:%s%s" % (mount.source, mount.target, ":ro" if mount.read_only else "")]
    fields = ["type=bind", "source=" + mount.source, "destination=" + mount.target] + (["ro"] if mount.read_only else [])
    return ["--mount", ",".join('"%s"' % f.replace('"', '""') if ("," in f or '"' in f) else f for f in fields)]


def check_fuse() -> None:
    """Raise a one-line error when Apptainer would mount a SIF with squashfuse but cannot open ``/dev/fuse``."""
    if not any(shutil.which(name) for name in SQUASHFUSE):
        return  # Apptainer unpacks the image, or mounts it through its setuid starter
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        why = "it does not exist" if exc.errno == errno.ENOENT else os.strerror(exc.errno).lower()
        raise BackendUnavailable(
            "cannot use /dev/fuse (%s), which Apptainer needs to mount SIF images: set 'unsquash: true' in the "
            "apptainer section (unpacks the image at each start), or give a sandbox folder as apptainer.image" % why
        ) from None
