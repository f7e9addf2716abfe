"""The built-in ``python`` backend: the worker runs in a thread of the host process.

Nothing is isolated; use it to debug worker code with the host's debugger.
"""
import os
import sys
import threading

from ..plugin.backend import BackendProvider
from ..plugin.process import WorkerProcess
from ..plugin.registry import hookimpl
from ..worker import rpc, serve
from ..host.interpreters import python_matches


class ThreadWorker(WorkerProcess):
    """A worker loop running in a daemon thread of this process."""

    def __init__(self, launch):
        self.error = None
        self.worker = None
        self.thread = threading.Thread(target=self._run, args=(launch,), name="nbcore-inprocess-worker", daemon=True)
        self.thread.start()

    def _run(self, launch):
        try:
            cwd = os.getcwd() if launch.cwd is None else str(launch.cwd)
            if cwd not in sys.path:  # as in a worker process: modules in the host's cwd import
                sys.path.insert(0, cwd)
            variables = launch.variables
            rpc.add_import_paths([p for p in variables.get(serve.PATHS_VARIABLE, "").split(os.pathsep) if p])
            self.worker = serve.connect(variables[serve.ADDRESS_VARIABLE],
                                        bytes.fromhex(variables[serve.SECRET_VARIABLE]),
                                        serve.load_protocols(variables[serve.PROTOCOLS_VARIABLE]))
            self.worker.exit_when_host_dies = False
            self.worker.serve()
        except BaseException as exc:  # reported through output_tail
            self.error = "%s: %s" % (type(exc).__name__, exc)
            if self.worker is not None:
                self.worker.close()  # the host's recv ends instead of waiting for a loop that is gone

    def poll(self):
        return None if self.thread.is_alive() else (1 if self.error else 0)

    def wait(self, timeout):
        self.thread.join(timeout)
        return self.poll()

    def kill(self):
        if self.worker is not None:
            self.worker.close()
        self.thread.join(2)

    def output_tail(self):
        return self.error or ""


class PythonBackend(BackendProvider):
    """Runs the worker in the host process: no isolation, no install, for debugging."""

    name = "python"
    description = "in-process worker thread (no isolation; for debugging)"
    accepts_python_ranges = True

    def check_available(self):
        return None

    def check_spec(self, env):
        if not python_matches(env.spec.python, sys.version_info):
            return "the host runs Python %d.%d, the spec asks for %s" % (sys.version_info[0], sys.version_info[1], env.spec.python)
        return None

    def install(self, env, progress):
        if env.spec.packages or env.spec.install_script:
            progress.step("the python backend installs nothing: packages must already be importable in the host")

    def start_worker(self, env, launch):
        return ThreadWorker(launch)


@hookimpl
def nbcore_register(register):
    register.backend(PythonBackend())
