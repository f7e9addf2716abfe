"""``python -m nb_ray.node_agent``: on a Ray node, install an environment and run its worker until told to stop.

Started by :class:`nb_ray.actor.NodeActor` in a session of its own, and with
``--detach`` no child of the actor's (Ray kills an actor's children with it).  It reads one
JSON request from stdin, installs the environment with the node's inner backend
(under the node's ``NBCORE_HOME``; progress goes to stderr, which Ray forwards to
the host), starts the worker with that backend's ``start_worker`` (or, for
``nbcore shell``, the command: :mod:`nb_ray.shell_node`) and reports JSON
events on stdout: ``installed``, ``started``, ``exit`` (code and output tail) or
``error``.  A ``kill`` line on stdin, or stdin closing (the actor died), ends the worker.
"""
import json
import os
import sys
import threading
from pathlib import Path

from nbcore.plugin import EnvironmentSpec, NbcoreError, Progress, WorkerLaunch, get_registry, install_environment

from . import node_store
from .shell_node import ShellSession

#: Seconds between checks of the worker while waiting for its end.
POLL_SECONDS = 0.5


def _say(event, **fields):
    try:
        sys.stdout.write(json.dumps(dict(fields, event=event)) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        pass  # the actor is gone: nobody to tell


def _provider(name):
    provider = get_registry().backends.get(name)
    if provider is None:
        raise NbcoreError("the backend %r is not installed on this node" % name)
    reason = provider.check_available()
    if reason:
        raise NbcoreError("the backend %s is unavailable on this node: %s" % (name, reason))
    return provider


def prepare(request):
    """Install the requested environment; return ``(provider, env)``."""
    provider = _provider(request["backend"])
    spec = EnvironmentSpec.from_dict(request["spec"], source=request.get("source", ""), base_dir=request.get("base_dir"))
    env = install_environment(provider, request["name"], spec, Progress(), install=False)
    reason = provider.check_spec(env)
    if reason:
        raise NbcoreError("the backend %s cannot provide %s on this node: %s" % (provider.name, request["name"], reason))
    return provider, install_environment(provider, request["name"], spec, Progress())


def start_worker(provider, env, request):
    """Start the environment's worker as the host asked; return its handle."""
    launch = WorkerLaunch(worker_path=Path(request["worker_path"]), cwd=_cwd(request),
                          variables=request["variables"], python_args=request["python_args"])
    return provider.start_worker(env, launch)


def start_shell(provider, env, request):
    """Start ``nbcore shell``'s command inside the environment (:mod:`nb_ray.shell_node`); return its session."""
    shell = request["shell"]
    variables = {"TERM": shell["term"]} if shell["tty"] and shell.get("term") else {}
    command = provider.shell_command(env, shell["argv"], _cwd(request), terminal=shell["tty"], variables=variables)
    return ShellSession(command, shell, env.name)


def _cwd(request):
    return Path(request["cwd"]) if request.get("cwd") else None


def _watch_stdin(handle, stop):
    for line in sys.stdin:
        if line.strip() == "kill":
            break
    stop.set()
    handle.kill()


def main():
    if "--detach" in sys.argv and os.fork():
        os._exit(0)  # the agent goes on in the child, which is no child of the actor
    _say("agent", pid=os.getpid())
    request = json.loads(sys.stdin.readline())
    # shared locks on the shipped folders this agent uses, open until it ends: nbcore gc leaves those alone
    held = [node_store.hold(path) for path in (request.get("cwd"), request.get("worker_path")) if path]  # noqa: F841
    try:
        provider, env = prepare(request)
        _say("installed", path=str(env.path))
        if request.get("install_only"):
            return 0
        handle = start_shell(provider, env, request) if "shell" in request else start_worker(provider, env, request)
    except Exception as exc:
        _say("error", message=str(exc) if isinstance(exc, NbcoreError) else "%s: %s" % (type(exc).__name__, exc))
        return 1
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(handle, stop), daemon=True).start()
    _say("started", path=str(env.path))
    code = None
    while code is None:
        code = handle.wait(POLL_SECONDS)
    handle.kill()
    _say("exit", code=code, tail=handle.output_tail())
    return 0


if __name__ == "__main__":
    sys.exit(main())
