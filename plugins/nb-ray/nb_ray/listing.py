"""``nbcore envs --backend ray``: every alive node of the cluster lists the environments of its own store."""
from typing import List

from nbcore.plugin import log

from .cluster import error_cause

#: Seconds the host waits for the nodes' listings; a node that has not answered by then is left out, with a warning.
LIST_TIMEOUT = 60.0


def node_environments(placements: str) -> List[dict]:
    """On a node: the environments of its store, each with :func:`~nb_ray.actor.node_identity` (the node's short
    id in ``node``); not those of the backend ``placements``, which a host sharing the node's store keeps for
    its own environments on Ray (they hold nothing)."""
    from nbcore.plugin import list_environments

    from .actor import node_identity

    node = node_identity()
    node["node"] = node["node_id"][:12]
    return [dict(record, **node) for record in list_environments() if record["backend"] != placements]


def cluster_environments(ray, placements: str) -> List[dict]:
    """The environments of every alive node, listed by a short task pinned to each node (see
    :func:`node_environments` for ``placements``)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(node_environments)
    nodes = {}
    for node in ray.nodes():
        if node.get("Alive"):
            pinned = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            nodes[task.options(scheduling_strategy=pinned).remote(placements)] = node
    ready, late = ray.wait(list(nodes), num_returns=len(nodes), timeout=LIST_TIMEOUT)
    records = []
    for ref in ready:
        try:
            records += ray.get(ref)
        except ray.exceptions.RayError as exc:
            log.warning("Ray node %s could not list its environments: %s", _describe(nodes[ref]), error_cause(exc))
    for ref in late:
        ray.cancel(ref, force=True)
        log.warning("Ray node %s did not list its environments within %.0f s; they are left out",
                    _describe(nodes[ref]), LIST_TIMEOUT)
    return sorted(records, key=lambda r: (r["node_id"], r["backend"], r["name"], r["path"]))


def _describe(node) -> str:
    return "%s (%s)" % (node["NodeID"][:12], node.get("NodeManagerAddress", "?"))
