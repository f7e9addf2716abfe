"""Protocol upgrade after the fallback connection is up, worker side (the host side is
:mod:`nbcore.host.negotiation`).

The worker says hello (its Python and numpy versions, highest pickle protocol,
which protocols it can run); the host picks the pickle protocol, says its own
versions (both sides keep the other's in :attr:`Channel.peer`, for error
messages), and offers the other protocols of the
list in reverse order.  For each offer the worker either accepts (and replies
with what the host needs to finish) or declines with a reason.  The first
protocol both sides complete is used; when none is, both stay on the fallback.
"""
from .framing import highest_pickle_protocol
from .versions import numpy_version, python_version


def worker_negotiate(channel, modules):
    """Worker side.  ``modules`` maps protocol name to its worker module; return the channel to use."""
    reasons = {}
    for name, module in modules.items():
        try:
            reasons[name] = module.worker_available()
        except Exception as exc:  # a broken plugin must not break the fallback
            reasons[name] = "%s: %s" % (type(exc).__name__, exc)
    channel.send({
        "python": python_version(),
        "numpy": numpy_version(),
        "pickle_protocol": highest_pickle_protocol(),
        "protocols": reasons,
    })
    answer = channel.recv()
    pickle_protocol = answer["pickle_protocol"]
    channel.pickle_protocol = pickle_protocol
    host = {"python": answer["python"], "numpy": answer.get("numpy")} if answer.get("python") else None
    channel.peer = host
    while True:
        message = channel.recv()
        if message["op"] == "done":
            return channel
        module = modules.get(message["name"])
        try:
            upgraded, reply = module.worker_accept_offer(channel, message["offer"])
        except Exception as exc:
            channel.send({"ok": False, "reason": "%s: %s" % (type(exc).__name__, exc)})
            continue
        channel.send({"ok": True, "reply": reply})
        if channel.recv()["op"] == "use":
            upgraded.pickle_protocol = pickle_protocol
            upgraded.peer = host
            return upgraded
        if upgraded is not channel:
            upgraded.close()
