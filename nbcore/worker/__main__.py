"""Entry point of a worker process: ``python -m nbcore.worker``.

The host passes everything through the environment (never argv):
``NBCORE_WORKER_ADDRESS`` where to connect, ``NBCORE_WORKER_SECRET`` the
per-worker secret (hex), ``NBCORE_WORKER_PROTOCOLS`` ``name=module`` pairs of the
protocols the host injected, the first one being the fallback to connect with.
"""
import importlib
import os
import sys


def _protocol_modules(spec):
    modules = {}
    for item in spec.split(","):
        name, _, module_name = item.partition("=")
        try:
            modules[name] = importlib.import_module(module_name)
        except Exception as exc:
            modules[name] = _Unavailable("cannot import %s: %s" % (module_name, exc))
    return modules


class _Unavailable:
    def __init__(self, reason):
        self.reason = reason

    def worker_available(self):
        return self.reason


def main():
    address = os.environ.pop("NBCORE_WORKER_ADDRESS")
    secret = bytes.fromhex(os.environ.pop("NBCORE_WORKER_SECRET"))
    modules = _protocol_modules(os.environ.pop("NBCORE_WORKER_PROTOCOLS"))
    fallback = next(iter(modules.values()))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)

    from .negotiation import worker_negotiate
    from .rpc import Worker

    channel = fallback.worker_connect(address, secret, "main")
    control = fallback.worker_connect(address, secret, "control")
    del secret
    channel = worker_negotiate(channel, modules)
    Worker(channel, control).serve()


if __name__ == "__main__":
    main()
