"""``python -m nb_slurm.node_build``: on a Slurm node, as a job step, build an environment with the node's backend.

Run by the host through ``srun`` with the request in ``NBCORE_SLURM_BUILD`` (JSON:
``backend``, ``name``, ``spec``, ``source``, ``base_dir``).  The environment goes
under ``NBCORE_HOME``, which the host shares with the nodes, with the usual
install lock and ready marker, so the host finds it ready afterwards.  Progress
goes to stderr (``srun`` relays it to the host); a failure is one line there and
exit code 1.
"""
import json
import os
import sys

from nbcore.plugin import EnvironmentSpec, NbcoreError, Progress, get_registry, install_environment, nbcore_home

REQUEST_VARIABLE = "NBCORE_SLURM_BUILD"


def build(request):
    provider = get_registry().backends.get(request["backend"])
    if provider is None:
        raise NbcoreError("the backend %r is not installed on this node" % request["backend"])
    reason = provider.check_available()
    if reason:
        raise NbcoreError("the backend %s is unavailable on this node: %s" % (provider.name, reason))
    home = nbcore_home()
    if not os.access(str(home), os.W_OK):
        raise NbcoreError("NBCORE_HOME %s is not writable here; nb-slurm needs it on a filesystem shared by the "
                          "host and the nodes" % home)
    spec = EnvironmentSpec.from_dict(request["spec"], source=request.get("source", ""), base_dir=request.get("base_dir"))
    env = install_environment(provider, request["name"], spec, Progress(), install=False)
    reason = provider.check_spec(env)
    if reason:
        raise NbcoreError("the backend %s cannot provide %s on this node: %s" % (provider.name, request["name"], reason))
    return install_environment(provider, request["name"], spec, Progress())


def main():
    try:
        env = build(json.loads(os.environ.pop(REQUEST_VARIABLE)))
    except Exception as exc:
        message = str(exc) if isinstance(exc, NbcoreError) else "%s: %s" % (type(exc).__name__, exc)
        sys.stderr.write("nbcore: error: %s\n" % message)
        return 1
    sys.stderr.write("nbcore: built %s at %s\n" % (env.name, env.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
