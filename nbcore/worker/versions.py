"""The Python and numpy versions of this side, and the message when one side cannot rebuild what the other sent.

Host and worker tell each other their versions during the negotiation (see
:mod:`nbcore.worker.negotiation`); a channel keeps the peer's in :attr:`Channel.peer`.
"""
import os
import sys

#: The oldest Python a worker runs on (shm-pickle needs 3.8).
MINIMUM_PYTHON = (3, 7)
#: The exit code of a worker started on an older Python; its one line of stderr says so.
TOO_OLD_EXIT = 78


def python_version():
    return "%d.%d.%d" % sys.version_info[:3]


def numpy_version():
    """numpy's version on this side without importing it (its install record on ``sys.path``), or None.

    Only the folder holding numpy is listed: the others (the working directory first) may be large."""
    numpy = sys.modules.get("numpy")
    version = getattr(numpy, "__version__", None)
    if version:
        return version
    for folder in sys.path:
        if not os.path.exists(os.path.join(folder or ".", "numpy")):
            continue
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("numpy-") and name.endswith((".dist-info", ".egg-info")):
                return name[len("numpy-"):].rsplit(".", 1)[0].split("-")[0]
        return "unknown"
    return None


def this_side():
    """``{"python": ..., "numpy": ... or None}`` of this process."""
    return {"python": python_version(), "numpy": numpy_version()}


def describe(versions):
    """``"Python 3.9.18, numpy 1.23.5"`` (``"..., no numpy"``, ``"unknown versions"`` for an old peer)."""
    if not versions or not versions.get("python"):
        return "unknown versions"
    numpy = versions.get("numpy")
    return "Python %s, %s" % (versions["python"], "numpy %s" % numpy if numpy else "no numpy")


def cannot_rebuild(receiver, receiver_versions, what, sender, sender_versions, error, culprit=None, type_name=None):
    """One line: ``the environment (Python 3.9.18, numpy 1.23.5) cannot rebuild an argument of type X
    from the host (Python 3.12.1, numpy 2.1.3): No module named 'foo'``.

    ``culprit`` is what the pickle needed and could not import (:attr:`DecodeError.culprit`),
    ``type_name`` the object's type when the sender said it (else the culprit stands for it)."""
    if type_name or culprit:
        what += " of type %s" % (type_name or culprit)
    why = str(error) if isinstance(error, ImportError) else "%s: %s" % (type(error).__name__, error)
    text = "%s (%s) cannot rebuild %s from %s (%s): %s" % (
        receiver, describe(receiver_versions), what, sender, describe(sender_versions), why)
    mine, theirs = (receiver_versions or {}).get("numpy"), (sender_versions or {}).get("numpy")
    if culprit and culprit.split(".")[0] == "numpy" and mine and theirs and mine != theirs:
        text += (" (numpy %s and %s pickle object arrays and ndarray subclasses differently; "
                 "send plain arrays or keep the object remote with env.remote())" % (theirs, mine))
    return text
