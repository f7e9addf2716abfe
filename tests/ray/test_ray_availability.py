"""Whether the ray backend can run here, decided without a cluster."""
import importlib.machinery
import sys
import types

from nb_ray import cluster
from nb_ray.backend import RayBackend


def test_a_program_that_called_ray_init_is_a_driver_already_and_needs_no_address(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cluster, "LOCAL_CLUSTER_FILE", str(tmp_path / "none"))
    ray = types.ModuleType("ray")
    ray.__spec__ = importlib.machinery.ModuleSpec("ray", None)
    ray.is_initialized = lambda: False
    monkeypatch.setitem(sys.modules, "ray", ray)
    assert "no Ray cluster is known" in RayBackend().check_available()
    ray.is_initialized = lambda: True
    assert RayBackend().check_available() is None
