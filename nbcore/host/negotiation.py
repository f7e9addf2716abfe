"""Protocol upgrade after the fallback connection is up, host side (the worker side is
:mod:`nbcore.worker.negotiation`, which describes the exchange)."""
from ..worker.framing import highest_pickle_protocol
from ..worker.versions import numpy_version, python_version


def host_negotiate(channel, candidates, log):
    """Host side.  ``candidates`` are ``(name, provider)`` in the order to try them.

    Return ``(channel, hello)`` where ``hello`` is what the worker said about itself (``python``,
    ``numpy``: None without numpy or from a worker too old to say; ``pickle_protocol``, ``protocols``).
    ``log(message)`` receives one line per protocol that was skipped, with the reason.
    """
    hello = channel.recv()
    pickle_protocol = min(hello["pickle_protocol"], highest_pickle_protocol())
    channel.send({"pickle_protocol": pickle_protocol, "python": python_version(), "numpy": numpy_version()})
    channel.pickle_protocol = pickle_protocol
    channel.peer = {"python": hello["python"], "numpy": hello.get("numpy")}
    worker_protocols = hello["protocols"]
    for name, provider in candidates:
        if name not in worker_protocols:
            log("%s: not installed in the worker's environment" % name)
            continue
        if worker_protocols[name] is not None:
            log("%s: unavailable in the worker: %s" % (name, worker_protocols[name]))
            continue
        try:
            state, offer = provider.host_offer(channel)
        except Exception as exc:
            log("%s: could not be offered: %s" % (name, exc))
            continue
        channel.send({"op": "offer", "name": name, "offer": offer})
        answer = channel.recv()
        if not answer["ok"]:
            provider.host_abort(state)
            log("%s: the worker declined: %s" % (name, answer["reason"]))
            continue
        try:
            upgraded = provider.host_complete(channel, state, answer["reply"])
        except Exception as exc:
            channel.send({"op": "abandon"})
            provider.host_abort(state)
            log("%s: could not be completed: %s" % (name, exc))
            continue
        channel.send({"op": "use"})
        upgraded.pickle_protocol = pickle_protocol
        upgraded.peer = channel.peer
        return upgraded, hello
    channel.send({"op": "done"})
    return channel, hello
