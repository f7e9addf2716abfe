"""The project folder as shipped to a node, and the cluster probe: no Ray cluster needed."""
import io
import socket
import tarfile

import pytest

from nbcore.errors import UserError

from nb_ray import cluster
from nb_ray.project import pack_project, project_files


def _tree(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_gitignore_is_honoured_at_every_depth(tmp_path):
    _tree(tmp_path, {
        ".gitignore": "*.log\n!keep.log\nbuild/\n",
        "a.py": "", "x.log": "", "keep.log": "", "build/out.o": "",
        "sub/.gitignore": "data/\n", "sub/b.py": "", "sub/data/big.bin": "", "sub/y.log": "",
        ".git/config": "", "__pycache__/a.pyc": "",
    })
    names = sorted(str(p) for p in project_files(tmp_path))
    assert names == [".gitignore", "a.py", "keep.log", "sub/.gitignore", "sub/b.py"]


def test_the_archive_is_content_addressed(tmp_path):
    _tree(tmp_path, {"a.py": "one", "pkg/b.py": "two"})
    data, digest = pack_project(tmp_path, 10_000)
    assert pack_project(tmp_path, 10_000)[1] == digest  # same content, same name
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["a.py", "pkg/b.py"]
    (tmp_path / "a.py").write_text("changed")
    assert pack_project(tmp_path, 10_000)[1] != digest


def test_a_project_over_the_limit_is_a_one_line_error(tmp_path):
    _tree(tmp_path, {"big.bin": "x" * 5000})
    with pytest.raises(UserError, match="over the .* limit; list large files in .gitignore or raise NBCORE_RAY_PROJECT_LIMIT"):
        pack_project(tmp_path, 1000)


def test_an_unreachable_cluster_names_its_address(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:%d" % port)
    cluster.unreachable.cache_clear()
    reason = cluster.unreachable(cluster.cluster_address())
    assert reason is not None and "127.0.0.1:%d (RAY_ADDRESS)" % port in reason and "ray start --head" in reason


def test_a_listening_head_counts_as_reachable(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:%d" % server.getsockname()[1])
        cluster.unreachable.cache_clear()
        assert cluster.unreachable(cluster.cluster_address()) is None
    cluster.unreachable.cache_clear()
