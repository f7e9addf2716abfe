"""Starting a worker: connect to the host, negotiate the protocol, serve requests.

:func:`serve` is the one entry point; the worker process the host starts calls
it with what the host put in the environment (:func:`main`, run by ``python -c``
or ``python -m nbcore.worker``), and other launchers
(the in-process ``python`` backend, a launcher on another machine) call it
directly.
"""
import os
import sys

from .descendants import become_subreaper, end_descendants
from .negotiation import worker_negotiate
from .rpc import Worker, add_import_paths, import_module

#: Variables the host sets for the worker process; :func:`main` removes them before user code runs.
ADDRESS_VARIABLE = "NBCORE_WORKER_ADDRESS"
SECRET_VARIABLE = "NBCORE_WORKER_SECRET"
PROTOCOLS_VARIABLE = "NBCORE_WORKER_PROTOCOLS"
KEEPALIVE_VARIABLE = "NBCORE_WORKER_KEEPALIVE"
#: The spec's ``pythonpath:`` folders (``os.pathsep``-separated), put first on ``sys.path``.
PATHS_VARIABLE = "NBCORE_WORKER_PATHS"
#: A writable folder where the worker keeps the bytecode of its own modules while their folder is read-only (a
#: container's mount): the staged ``nbcore`` package makes it ``sys.pycache_prefix`` until :func:`main` restores
#: the user's.
BYTECODE_VARIABLE = "NBCORE_WORKER_PYCACHE"
#: Seconds after which a host that stopped answering on the control connection counts as gone.
DEFAULT_KEEPALIVE = 60.0


class _Unavailable:
    """Stands in for a protocol module that failed to import, so the host hears why."""

    def __init__(self, reason):
        self.reason = reason

    def worker_available(self):
        return self.reason


def load_protocols(spec):
    """Import the protocol modules named by ``spec`` (``name=module,...``, the fallback first)."""
    modules = {}
    for item in spec.split(","):
        name, _, module_name = item.partition("=")
        try:
            modules[name] = import_module(module_name)
        except Exception as exc:
            modules[name] = _Unavailable("cannot import %s: %s" % (module_name, exc))
    return modules


def connect(address, secret, protocols, keepalive=None):
    """Connect to the host at ``address`` with the first of ``protocols`` (from :func:`load_protocols`),
    negotiate, and return the :class:`~nbcore.worker.rpc.Worker` ready to serve.

    ``keepalive`` (seconds, None = :data:`DEFAULT_KEEPALIVE`) bounds how long a
    vanished host (its machine down, the network cut) goes unnoticed.
    """
    fallback = next(iter(protocols.values()))
    channel = fallback.worker_connect(address, secret, "main")
    try:
        control = fallback.worker_connect(address, secret, "control")
        control.keepalive(keepalive or DEFAULT_KEEPALIVE)
    except BaseException:
        channel.close()
        raise
    try:
        channel = worker_negotiate(channel, protocols)
    except BaseException:
        channel.close()
        control.close()
        raise
    return Worker(channel, control)


def serve(address, secret, protocols, keepalive=None, exit_when_host_dies=True):
    """Run a worker until the host shuts it down (or goes away): :func:`connect`, then serve."""
    worker = connect(address, secret, protocols, keepalive)
    worker.exit_when_host_dies = exit_when_host_dies
    worker.serve()


def main():
    """The worker process: read the host's variables (and remove them), then :func:`serve`.

    The worker process is the subreaper of everything its code starts, and ends all of it when it exits
    (see :mod:`.descendants`)."""
    address = os.environ.pop(ADDRESS_VARIABLE)
    secret = bytes.fromhex(os.environ.pop(SECRET_VARIABLE))
    protocols = load_protocols(os.environ.pop(PROTOCOLS_VARIABLE))
    # The staged nbcore package lifted PYTHONDONTWRITEBYTECODE (-B) for the worker's own modules, and may have moved
    # their bytecode to the folder of BYTECODE_VARIABLE; user code keeps the user's settings.
    sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)
    os.environ.pop(BYTECODE_VARIABLE, None)
    if hasattr(sys, "pycache_prefix"):
        sys.pycache_prefix = getattr(sys.modules["nbcore"], "USER_PYCACHE_PREFIX", sys.pycache_prefix)
    keepalive = os.environ.pop(KEEPALIVE_VARIABLE, None)
    cwd = os.getcwd()
    if sys.path[:1] == [""]:  # python -c puts "" (the folder current at each import) first: the worker's own instead
        del sys.path[0]
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    add_import_paths([p for p in os.environ.pop(PATHS_VARIABLE, "").split(os.pathsep) if p])
    become_subreaper()  # what the code it runs starts stays in its tree, even after setsid
    try:
        try:
            worker = connect(address, secret, protocols, float(keepalive) if keepalive else None)
        except (OSError, ValueError) as exc:  # the host told us an address we cannot reach: one line, no traceback
            sys.stderr.write("nbcore worker: cannot connect to the host at %s: %s\n" % (address, exc))
            sys.exit(1)
        worker.serve()
    finally:
        end_descendants(reap=True)
