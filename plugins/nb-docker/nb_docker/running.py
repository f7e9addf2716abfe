"""A worker running in a container, as the host watches it."""
import threading
from typing import Optional

import docker.errors
from nbcore.plugin import OutputReader, OutputTail, WorkerError, WorkerProcess

#: Exit code reported when the container vanished before the daemon told its status.
UNKNOWN_EXIT = -1


class ContainerWorker(WorkerProcess):
    """A started worker container (created with auto-remove).

    Two background threads follow it from before it starts: an
    :class:`~nbcore.plugin.OutputReader` streams its output (echoed to stderr,
    last lines kept for error messages even after the container is gone), one
    waits for its removal and records the exit code, so :meth:`poll` costs no
    request to the daemon.
    """

    def __init__(self, api, config, tail_lines=20, echo=True):
        self.api = api
        self._exit_code = None
        self._ended = threading.Event()
        try:
            self.container_id = api.create_container(**config.create_kwargs(api))["Id"]
        except docker.errors.APIError as exc:
            raise _start_failure(config, exc) from None
        try:
            output = api.attach(self.container_id, stdout=True, stderr=True, stream=True, logs=True)
            self._reader = OutputReader(output, echo=echo, tail=OutputTail(max_lines=tail_lines),
                                        name="nbcore-docker-output")
            self._waiter = threading.Thread(target=self._wait_removed, name="nbcore-docker-wait", daemon=True)
            self._waiter.start()
            api.start(self.container_id)
        except BaseException as exc:
            self._remove()
            if isinstance(exc, docker.errors.APIError):
                raise _start_failure(config, exc) from None
            raise

    def _wait_removed(self):
        try:
            self._exit_code = self.api.wait(self.container_id, timeout=None, condition="removed")["StatusCode"]
        except Exception:
            self._exit_code = UNKNOWN_EXIT
        self._ended.set()

    def poll(self) -> Optional[int]:
        return self._exit_code if self._ended.is_set() else None

    def wait(self, timeout):
        self._ended.wait(timeout)
        return self.poll()

    def kill(self):
        if not self._ended.is_set():
            try:
                self.api.kill(self.container_id)
            except docker.errors.APIError:
                pass
            if not self._ended.wait(10):
                self._remove()
        self._reader.stop(timeout=2)

    def _remove(self):
        try:
            self.api.remove_container(self.container_id, force=True)
        except docker.errors.APIError:
            pass

    def output_tail(self):
        self._reader.stop(timeout=0.5)
        return self._reader.tail.text()


def _start_failure(config, exc):
    explanation = " ".join(str(exc.explanation or exc).split())
    hint = ""
    if "capabilities: [[gpu]]" in explanation:
        hint = "; GPUs need the NVIDIA container toolkit on the host (or set gpus: false in the docker section)"
    elif "error setting rlimit" in explanation:
        hint = "; the daemon may not raise that resource limit here: lower it in docker.ulimits (null drops it)"
    return WorkerError("could not start the worker container from %s: %s%s" % (config.image, explanation, hint))
