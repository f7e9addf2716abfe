"""The Ray actor that stands for one worker on its node (runs in the cluster's Python, with nbcore there).

The actor does not hold the worker itself: it starts :mod:`nb_ray.node_agent` in a
session of its own, which installs the environment with the node's inner backend,
starts the worker and watches it.  The agent ends the worker when the actor asks,
and also when the actor dies without asking (its pipe closes), so a crashed or
killed actor leaves no worker behind.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading

from nbcore.plugin import nbcore_home

from . import node_store

#: The exit code reported when the agent ended without reporting the worker's (it was killed).
AGENT_LOST = 255
#: Seconds :meth:`NodeActor.kill` waits for the agent to end the worker.
KILL_TIMEOUT = 10.0


def node_identity() -> dict:
    """Which node this process runs on: its Ray node id, address, host name and ``NBCORE_HOME``."""
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(), "home": str(nbcore_home())}


class NodeActor:
    """One worker's stand-in on a node: stores what the host ships, runs the agent, reports the worker's end."""

    def __init__(self):
        self._agent = None
        self._events = []
        self._changed = threading.Condition()

    def node(self) -> dict:
        """Which node this is (:func:`node_identity`) and the actor's pid, for placement checks and messages."""
        return dict(node_identity(), pid=os.getpid())

    def folder_exists(self, path: str) -> bool:
        return os.path.isdir(path)

    def stored(self, kind: str, digest: str):
        """The folder of the archive ``digest`` of ``kind`` when this node has it intact, else None
        (:func:`nb_ray.node_store.stored`)."""
        return node_store.stored(kind, digest)

    def store(self, kind: str, digest: str, data: bytes) -> str:
        """Keep and unpack the shipped archive ``data`` (:func:`nb_ray.node_store.store`); return its folder."""
        return node_store.store(kind, digest, data)

    def run(self, request: dict) -> dict:
        """Start the agent with ``request`` and wait until it has installed (and, unless ``install_only``,
        started) the environment; return the agent's ``installed``, ``started`` or ``error`` event."""
        starter = subprocess.Popen([sys.executable, "-m", "nb_ray.node_agent", "--detach"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, start_new_session=True)
        starter.wait()  # it forked the agent and left: the agent is no child of ours, which Ray would kill with us
        self._agent = starter
        starter.stdin.write((json.dumps(request) + "\n").encode())
        starter.stdin.flush()
        threading.Thread(target=self._follow, daemon=True).start()
        goal = "installed" if request.get("install_only") else "started"
        event = self._wait_for({goal, "error", "exit"})
        if event["event"] == "exit":
            return {"event": "error", "message": "the node agent ended before the worker started (see its output above)"}
        return event

    def _follow(self):
        for line in self._agent.stdout:
            self._add(json.loads(line))
        self._add({"event": "agent-exit"})

    def _add(self, event):
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def _wait_for(self, kinds, timeout=None):
        with self._changed:
            self._changed.wait_for(lambda: any(e["event"] in kinds | {"agent-exit"} for e in self._events), timeout)
            found = [e for e in self._events if e["event"] in kinds | {"agent-exit"}]
        if not found:
            return None
        event = found[0]
        if event["event"] == "agent-exit":
            return {"event": "exit", "code": AGENT_LOST, "tail": "the node agent ended without reporting the worker's end"}
        return event

    def wait_exit(self) -> dict:
        """Block until the worker has ended; return ``{"code": ..., "tail": ...}``."""
        event = self._wait_for({"exit"})
        return {"code": event["code"], "tail": event.get("tail", "")}

    def kill(self) -> None:
        """End the worker (through the agent) and wait, boundedly, for the agent to finish."""
        if self._agent is None or self._wait_for({"agent-exit"}, timeout=0) is not None:
            return
        try:
            self._agent.stdin.write(b"kill\n")
            self._agent.stdin.flush()
        except OSError:
            pass
        if self._wait_for({"agent-exit"}, KILL_TIMEOUT) is None:
            agent = self._wait_for({"agent"}, timeout=0)
            if agent is not None:
                os.killpg(agent["pid"], signal.SIGKILL)
