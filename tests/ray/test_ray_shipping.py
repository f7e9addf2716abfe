"""What a node keeps of a shipped project (a real two-node cluster): verified before reuse, private, no secrets."""
import json
import os

import pytest

import nbcore

from nbtest import run_nbcore

pytestmark = pytest.mark.ray


def _shipped(ray_cluster, kind="project"):
    parent = ray_cluster.homes["nodeB"] / "ray" / kind
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")) if parent.is_dir() else []


def test_an_empty_or_damaged_shipped_folder_is_not_reused(ray_cluster, project, ray_config):
    from nb_ray.project import pack_project

    (project / "this_test.txt").write_text(os.urandom(8).hex())  # a digest no earlier test has shipped
    digest = pack_project(project, 10 ** 8)[1]
    squatter = ray_cluster.homes["nodeB"] / "ray" / "project" / digest
    squatter.mkdir(parents=True)  # a folder named by the archive's digest, empty
    with nbcore.open_backend("e", config=ray_config("nodeB")) as env:
        assert env.call("raymod:where")["cwd"] == str(squatter)
        assert env.call("os.path:exists", "raymod.py")
    (squatter / "raymod.py").write_text("def where():\n    return 'tampered'\n")
    with nbcore.open_backend("e", config=ray_config("nodeB")) as env:
        assert env.call("raymod:where")["cwd"] == str(squatter), "rebuilt from the archive it verified"


def test_secrets_stay_home_and_the_shipped_project_is_private_and_collected(ray_cluster, project, ray_config,
                                                                            tmp_path):
    (project / ".gitignore").unlink()
    for name, text in {".env": "TOKEN=1", ".netrc": "machine h password p", ".ssh/id_rsa": "KEY",
                       "tls/server.pem": "PEM", ".git/config": "[credential]", "pkg/mod.py": "X = 1"}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (tmp_path / "datasets").mkdir()
    (project / "data").symlink_to("../datasets")  # outside the project: left out, with a warning
    (project / ".gitignore").write_bytes(b"# caf\xe9\nignored/\n")  # not UTF-8
    with nbcore.open_backend("e", config=ray_config("nodeB")) as env:
        cwd = env.call("raymod:where")["cwd"]
        shipped = env.call("os:listdir", ".")
        modes = {name: env.call("os:stat", name).st_mode & 0o777 for name in (".", "pkg", "pkg/mod.py", "raymod.py")}
        result = run_nbcore("gc", "--older-than", "0", "--json", env={"NBCORE_HOME": str(ray_cluster.homes["nodeB"])})
        assert result.returncode == 0, result.stderr
        assert cwd not in [r["path"] for r in json.loads(result.stdout)], "gc removed the folder of a running worker"
    assert sorted(shipped) == [".gitignore", "__pycache__", "nbcore-worker.sha256", "pkg", "raymod.py"]
    assert modes == {".": 0o700, "pkg": 0o700, "pkg/mod.py": 0o600, "raymod.py": 0o600}

    result = run_nbcore("gc", "--older-than", "0", "--json", env={"NBCORE_HOME": str(ray_cluster.homes["nodeB"])})
    assert result.returncode == 0, result.stderr
    collected = {r["path"]: r for r in json.loads(result.stdout)}
    assert cwd in collected and collected[cwd]["backend"] == "ray"
    assert not os.path.exists(cwd) and not _shipped(ray_cluster), "shipped folders outlived nbcore gc"
