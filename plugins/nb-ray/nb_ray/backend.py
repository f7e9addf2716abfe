"""The ``ray`` backend: each worker runs on a Ray node, in an environment the node's own backend builds there.

Ray, the project packer (pathspec) and the shell relay are imported only when used: every
``nbcore`` command builds the registry.
"""
import importlib.util
import ipaddress
import os
from pathlib import Path
from typing import List, Optional

from nbcore.plugin import (BackendProvider, BackendUnavailable, InstallError, ListenAddress, UserError, WorkerError,
                           WorkerProcess, connect_timeout, get_registry, keepalive_seconds)
from nbcore.worker import serve

from . import cluster

#: ``NBCORE_RAY_SHIP_PROJECT=1`` ships the project folder even when the node has the host's folder.
SHIP_VARIABLE = "NBCORE_RAY_SHIP_PROJECT"
#: ``NBCORE_RAY_PLACEMENT_TIMEOUT``: seconds to wait for a node to take the environment's actor (default 120).
PLACEMENT_VARIABLE = "NBCORE_RAY_PLACEMENT_TIMEOUT"
#: The worker's exit code when its actor died: the node agent SIGKILLs the worker then (or the node went down).
KILLED_WITH_ACTOR = -9
#: Seconds :meth:`RayWorker.kill` waits for the actor to end the worker before killing the actor.
KILL_TIMEOUT = 15.0
#: Inner backends that cannot run on a node.
NOT_INNER = ("ray", "python")

RESOURCE_SCHEMA = {"type": "number", "minimum": 0}


def _placement_timeout():
    return float(os.environ.get(PLACEMENT_VARIABLE) or 120)


def _ship_forced():
    return os.environ.get(SHIP_VARIABLE, "").strip().lower() in ("1", "true", "yes", "always")


class RayBackend(BackendProvider):
    """Places each worker on a Ray node with the resources the spec asks for; the node builds the environment
    with its own backend (``ray: {backend: venv}``) and the worker connects straight back to the host."""

    name = "ray"
    description = "workers on the nodes of a Ray cluster (RAY_ADDRESS), built there by the node's own backend"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "backend": {"type": "string", "description": "the backend that builds the environment on the node"},
            "num_cpus": RESOURCE_SCHEMA,
            "num_gpus": RESOURCE_SCHEMA,
            "memory": {"type": "integer", "minimum": 0, "description": "bytes of memory the actor reserves"},
            "resources": {"type": "object", "additionalProperties": RESOURCE_SCHEMA},
            "ship_ignore": {"type": "array", "items": {"type": "string"},
                            "description": "gitignore patterns of project files not to ship to the nodes, after the "
                                           "default secret patterns ('!.env' ships a default-excluded file)"},
        },
    }
    auto_priority = None
    #: A spec with a ``ray:`` section runs on Ray unless the user names another backend.
    required_by_section = True
    environment_columns = ("node", "node_ip", "hostname", "home")

    def __init__(self):
        self._actor_class = None

    def check_available(self) -> Optional[str]:
        if importlib.util.find_spec("ray") is None:
            return "ray is not installed on the host; pip install the cluster's Ray version (pip install 'ray==X.Y.Z')"
        if cluster.connected():
            return None
        return cluster.unreachable(cluster.cluster_address())

    def list_environments(self) -> List[dict]:
        """What every alive node has installed: a record per environment per node, the inner backend as
        ``backend``, with the node's id (``node_id``, short in ``node``), ``node_ip``, ``hostname`` and ``home``."""
        reason = self.check_available()
        if reason:
            raise BackendUnavailable(reason)
        from .listing import cluster_environments

        return cluster_environments(cluster.connect(), self.name)

    def collect_garbage(self, unreferenced, older_than_days, dry_run):
        """The worker code and project folders hosts shipped to this machine as a Ray node (``nbcore gc`` run on
        the node): see :func:`nb_ray.node_store.collect_garbage`."""
        from .node_store import collect_garbage

        return collect_garbage(self.name, unreferenced, older_than_days, dry_run)

    def inner_backend(self, spec) -> str:
        return spec.section(self.name).get("backend") or "venv"

    def check_spec(self, env) -> Optional[str]:
        inner = self.inner_backend(env.spec)
        if inner in NOT_INNER:
            return "ray.backend cannot be %r; name the backend that builds the environment on the nodes (e.g. venv)" % inner
        return None

    def install(self, env, progress) -> None:
        """Build the environment on a node that has the resources (later starts build on their own node if needed)."""
        progress.step("installing %s on a Ray node with the %s backend" % (env.name, self.inner_backend(env.spec)))
        placed = self._place(env)
        try:
            node = placed.node
            progress.step("placed on Ray node %s (%s), NBCORE_HOME %s" % (node["node_id"][:12], node["node_ip"], node["home"]))
            request = self._request(env)
            request.update(self._project_fields(placed, env, Path.cwd()), install_only=True)
            placed.run(request, InstallError)
        finally:
            placed.ray.kill(placed.actor)

    def start_worker(self, env, launch) -> WorkerProcess:
        placed = self._place(env)
        try:
            request = self._request(env)
            request.update(self._launch_fields(placed, env, launch))
            placed.run(request, UserError)
        except BaseException:
            placed.ray.kill(placed.actor)
            raise
        return RayWorker(placed)

    def shell(self, env, command, launch) -> int:
        """Run ``command`` (a shell when empty) inside the environment on a node placed as for a worker, this
        process's terminal or pipes relayed to it (:mod:`nb_ray.shell_host`, :mod:`nb_ray.shell_node`)."""
        from .shell_host import host_terminal, relay, window_size

        fallback = get_registry().fallback_protocols()[0]
        listener = fallback.listen(ListenAddress.from_environment())
        secret = os.urandom(32)
        terminal = host_terminal()
        try:
            placed = self._place(env)
        except BaseException:
            listener.close()
            raise
        handle = None
        try:
            try:
                placed.check_reachable(listener.address)
                request = self._request(env)
                if launch.cwd is not None:
                    request.update(self._project_fields(placed, env, Path(launch.cwd)))
                request["shell"] = {"argv": list(command), "address": listener.address, "secret": secret.hex(),
                                    "protocol": fallback.worker_module, "keepalive": keepalive_seconds(),
                                    "tty": terminal is not None, "term": os.environ.get("TERM"),
                                    "winsize": window_size(terminal) if terminal is not None else None}
                placed.run(request, UserError)
                handle = RayWorker(placed)
                try:
                    main, control = listener.accept(secret, connect_timeout(), handle.poll)
                except WorkerError:
                    handle.wait(1.0)
                    raise WorkerError("the command on %s could not connect back to the host at %s: %s"
                                      % (placed.describe(), listener.address,
                                         handle.output_tail().splitlines()[-1])) from None
            finally:
                listener.close()
            main.keepalive(keepalive_seconds())
            return relay(main, control, terminal, placed.describe())
        finally:
            if handle is None:
                placed.ray.kill(placed.actor)
            else:
                handle.kill()

    def _place(self, env) -> "Placement":
        ray = cluster.connect()
        options = self._actor_options(env.spec)
        _check_feasible(ray, options)
        if self._actor_class is None:
            from .actor import NodeActor

            self._actor_class = ray.remote(max_concurrency=4)(NodeActor)
        actor = self._actor_class.options(**options).remote()
        try:
            node = ray.get(actor.node.remote(), timeout=_placement_timeout())
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            raise BackendUnavailable("no Ray node took %s's actor (asking for %s) within %.0f s (%s)"
                                     % (env.name, options or "no resources", _placement_timeout(), PLACEMENT_VARIABLE)) from None
        except BaseException:
            ray.kill(actor)
            raise
        return Placement(ray, actor, node)

    def _actor_options(self, spec) -> dict:
        section = spec.section(self.name)
        options = {key: section[key] for key in ("num_cpus", "num_gpus", "memory") if key in section}
        if section.get("resources"):
            options["resources"] = dict(section["resources"])
        return options

    def _request(self, env) -> dict:
        spec = {k: v for k, v in env.spec.to_dict().items() if k not in (self.name, "backends")}
        return {"backend": self.inner_backend(env.spec), "name": env.name, "spec": spec, "source": env.spec.source,
                "base_dir": env.spec.base_dir}

    def _launch_fields(self, placed, env, launch) -> dict:
        """What the node needs to start the worker: the shipped worker code and project, the variables."""
        if launch.worker_archive is None:  # nothing to ship: the node must see the host's folder
            worker_path = str(launch.worker_path)
        else:
            archive, digest = launch.worker_archive()
            worker_path = placed.stored("worker", digest, lambda: archive)
        fields = {"worker_path": worker_path, "python_args": list(launch.python_args),
                  "variables": placed.worker_variables(launch.variables)}
        if launch.cwd is not None:
            fields.update(self._project_fields(placed, env, Path(launch.cwd)))
        return fields

    def _project_fields(self, placed, env, cwd) -> dict:
        """The project folder on the node: the host's own when the node has it (and shipping is not forced),
        else the shipped copy, with the spec's folder moved into it (installs and starts agree on it)."""
        if not _ship_forced() and placed.call("folder_exists", str(cwd)):
            return {"cwd": str(cwd)}
        from .project import pack_project, size_limit

        data, digest = pack_project(cwd, size_limit(), env.spec.section(self.name).get("ship_ignore") or ())
        shipped = placed.stored("project", digest, lambda: data)
        return {"cwd": shipped, "base_dir": _moved(env.spec.base_dir, cwd, shipped)}


def _moved(path, old_root, new_root):
    """``path`` inside the shipped copy when it lies in the project folder (else unchanged)."""
    if not path:
        return path
    try:
        return str(Path(new_root) / Path(path).resolve().relative_to(Path(old_root).resolve()))
    except ValueError:
        return path


def _check_feasible(ray, options):
    """Fail at once, naming the nodes, when no alive node has the resources asked for."""
    wanted = dict(options.get("resources") or {})
    for key, name in (("num_cpus", "CPU"), ("num_gpus", "GPU"), ("memory", "memory")):
        if options.get(key):
            wanted[name] = options[key]
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if any(all(n["Resources"].get(k, 0) >= v for k, v in wanted.items()) for n in nodes):
        return
    offered = "; ".join("%s: %s" % (n["NodeID"][:12], ", ".join("%s=%g" % kv for kv in sorted(n["Resources"].items())
                                                                   if not kv[0].startswith("node:")))
                        for n in nodes)
    raise BackendUnavailable("no node of the Ray cluster has %s (nodes: %s)"
                             % (", ".join("%s=%g" % kv for kv in sorted(wanted.items())), offered or "none alive"))


class Placement:
    """An actor placed on a node, with what it said about the node."""

    def __init__(self, ray, actor, node):
        self.ray = ray
        self.actor = actor
        self.node = node

    def call(self, method, *args):
        return self.ray.get(getattr(self.actor, method).remote(*args))

    def stored(self, kind, digest, data):
        """The node's folder for the archive ``digest``, shipping ``data()`` only when the node lacks it (intact)."""
        try:
            return self.call("stored", kind, digest) or self.call("store", kind, digest, data())
        except self.ray.exceptions.RayError as exc:
            raise InstallError("shipping the %s folder to %s failed: %s" % (kind, self.describe(),
                                                                         cluster.error_cause(exc))) from None

    def same_node_as_host(self) -> bool:
        return self.node["node_id"] == self.ray.get_runtime_context().get_node_id()

    def worker_variables(self, variables) -> dict:
        """The launch variables for this node: protocols that need a shared node dropped when it is another
        node; a one-line error when the host's address is loopback and the node is another machine."""
        variables = dict(variables)
        if self.same_node_as_host() or serve.PROTOCOLS_VARIABLE not in variables:
            return variables
        fallback = variables[serve.PROTOCOLS_VARIABLE].split(",")[0]
        variables[serve.PROTOCOLS_VARIABLE] = fallback
        self.check_reachable(variables[serve.ADDRESS_VARIABLE])
        return variables

    def check_reachable(self, address):
        """A one-line error when the host listens at a loopback ``address`` and this node is another machine."""
        host = address.rpartition(":")[0].strip("[]")
        if _loopback(host) and not self.same_node_as_host() and self.node["node_ip"] != _host_ip(self.ray):
            raise BackendUnavailable("the host listens on %s, which Ray node %s (%s) cannot reach; set NBCORE_BIND=0.0.0.0 "
                                     "(and NBCORE_ADVERTISE=NAME if the nodes know the host by another name)"
                                     % (host, self.node["node_id"][:12], self.node["node_ip"]))

    def run(self, request, error):
        """Run the node agent with ``request``; its failure becomes ``error`` naming the node."""
        try:
            event = self.call("run", request)
        except self.ray.exceptions.RayError as exc:
            event = {"event": "error", "message": cluster.error_cause(exc)}
        if event["event"] == "error":
            raise error("on %s: %s" % (self.describe(), event["message"]))
        return event

    def describe(self) -> str:
        return "Ray node %s (%s)" % (self.node["node_id"][:12], self.node["node_ip"])


def _loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _host_ip(ray):
    return ray.util.get_node_ip_address()


class RayWorker(WorkerProcess):
    """The host's handle on a worker that a Ray actor started on its node."""

    def __init__(self, placed: Placement):
        self._placed = placed
        self._exit = placed.actor.wait_exit.remote()
        self._end = None
        self._killed = False

    def _settle(self, timeout):
        if self._end is None:
            ray = self._placed.ray
            ready, _ = ray.wait([self._exit], timeout=timeout)
            if ready:
                try:
                    result = ray.get(self._exit)
                    self._end = (result["code"], result["tail"])
                except ray.exceptions.RayError as exc:
                    self._end = (KILLED_WITH_ACTOR, "the Ray actor running the worker died: %s" % cluster.error_cause(exc))
        return None if self._end is None else self._end[0]

    def poll(self) -> Optional[int]:
        return self._settle(0)

    def wait(self, timeout: float) -> Optional[int]:
        return self._settle(timeout)

    def kill(self) -> None:
        if self._killed:
            return
        self._killed = True
        ray = self._placed.ray
        if self._end is None:
            try:
                ray.get(self._placed.actor.kill.remote(), timeout=KILL_TIMEOUT)
            except ray.exceptions.RayError:
                pass  # the actor is gone (its agent ends the worker) or stuck (killed below)
        ray.kill(self._placed.actor)

    def output_tail(self) -> str:
        tail = self._end[1] if self._end else ""
        return ("[on %s]\n%s" % (self._placed.describe(), tail)).strip()
