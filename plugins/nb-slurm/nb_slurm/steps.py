"""The host's handle on a worker that runs as a step of an environment's allocation.

``srun`` is a local process of the host that relays the step's output; its exit
code is the worker's, except after a node failure, where ``srun`` exits 0: so the
handle also asks the controller about the job.  While the worker runs, a watcher
looks at the job every :data:`WATCH_SECONDS`; when the job has failed under the
worker (its node failed, it hit its time limit, it was cancelled by someone else),
the host's connections to the worker are shut down, so a call in progress ends at
once with an error naming the job, the node and the state, as it would when the
node's machine vanished.
"""
import os
import socket
import threading
from typing import Optional

from nbcore.plugin import SubprocessWorker, WorkerProcess

from . import commands

#: ``NBCORE_SLURM_WATCH``: seconds between two looks at a running worker's job (default 5).
WATCH_VARIABLE = "NBCORE_SLURM_WATCH"
#: The exit code reported for a worker whose job failed under it (``srun`` says 0 then).
LOST = -9


def watch_seconds() -> float:
    return float(os.environ.get(WATCH_VARIABLE) or 5)


class SlurmStep(WorkerProcess):
    """A worker running as ``srun --jobid=JOB ...`` on the allocation's node; :meth:`kill` ends the whole job."""

    def __init__(self, allocation, argv, env, host_port: Optional[int]):
        self.allocation = allocation
        self.process = SubprocessWorker(argv, env=env, cwd=None)
        self._host_port = host_port
        self._lost = None
        self._checked = False
        self._done = threading.Event()
        threading.Thread(target=self._watch, name="nbcore-slurm-watch", daemon=True).start()

    def poll(self) -> Optional[int]:
        return self._settle(self.process.poll())

    def wait(self, timeout: float) -> Optional[int]:
        if self._lost is not None:
            return self._settle(self.process.wait(min(timeout, 1.0)) or LOST)
        return self._settle(self.process.wait(timeout))

    def _settle(self, code):
        if code is None:
            return LOST if self._lost is not None else None
        if self._lost is None and not self._checked:
            self._checked = True
            self._check_job()
        if self._lost is not None and code == 0:
            return LOST
        return code

    def _check_job(self):
        """Note why the job ended under the worker, when it failed (not when it completed or was cancelled by us)."""
        info = commands.job_info(self.allocation.job_id)
        state = commands.state_of(info)
        if state in commands.FAILED_STATES or (state == "CANCELLED" and not self._done.is_set()):
            self._lost = "%s ended: %s (reason: %s)" % (self.allocation.describe(), state,
                                                        (info or {}).get("Reason", "None"))
        return self._lost

    def _watch(self):
        interval = watch_seconds()
        looks_after_srun = 3  # srun may end (node failure) a moment before the controller's job state says why
        while not self._done.wait(interval):
            if self.process.poll() is not None:
                looks_after_srun -= 1
                if looks_after_srun < 0:
                    return
            try:
                lost = self._check_job()
            except Exception:
                continue
            if lost:
                if self._host_port is not None:
                    shutdown_connections(self._host_port)
                return

    def kill(self) -> None:
        self._done.set()
        try:
            self.process.kill()
        finally:
            self.allocation.cancel()

    def output_tail(self) -> str:
        lines = ["[%s]" % (self._lost or self.allocation.describe())]
        tail = self.process.output_tail().strip()
        return "\n".join(lines + ([tail] if tail else []))


def shutdown_connections(local_port: int) -> int:
    """Shut down this process's established TCP connections whose local port is ``local_port`` (the host's side
    of a worker's connections: they were accepted on that port); return how many.  A call blocked on one
    then ends as if the worker's machine had vanished."""
    inodes = {}
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/thread-self/net/%s" % table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                        inodes[fields[9]] = True
        except OSError:
            continue
    done = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/%s" % fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            try:
                sock = socket.socket(fileno=os.dup(int(fd)))
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                done += 1
            except OSError:
                pass
    return done
