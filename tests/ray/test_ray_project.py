"""The project folder as shipped to a node, and the cluster probe: no Ray cluster needed."""
import io
import os
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
    with pytest.raises(UserError, match=r"over the .* limit; list large files in .gitignore \(or ray.ship_ignore\) or raise NBCORE_RAY_PROJECT_LIMIT"):
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


SECRETS = {".env": "TOKEN=1", ".env.local": "TOKEN=2", ".netrc": "machine x password y", ".ssh/id_rsa": "KEY",
           "certs/server.pem": "PEM", "id_ed25519": "KEY", ".aws/credentials": "AWS", ".git/config": "GIT",
           "sub/.docker/config.json": "{}", ".git-credentials": "https://u:p@h"}


def test_well_known_secrets_are_not_shipped_without_a_gitignore(tmp_path):
    _tree(tmp_path, dict(SECRETS, **{"a.py": "", "sub/b.py": "", "environment.yml": ""}))
    assert sorted(str(p) for p in project_files(tmp_path)) == ["a.py", "environment.yml", "sub/b.py"]


def test_ship_ignore_excludes_more_and_can_ship_a_default_excluded_file(tmp_path):
    _tree(tmp_path, dict(SECRETS, **{"a.py": "", "data/big.bin": "", "keep.pem": ""}))
    names = sorted(str(p) for p in project_files(tmp_path, ["data/", "!keep.pem", "!.env"]))
    assert names == [".env", "a.py", "keep.pem"]


def test_a_gitignore_cannot_ship_a_secret(tmp_path):
    _tree(tmp_path, {".gitignore": "!.env\n", ".env": "TOKEN=1", "a.py": ""})
    assert sorted(str(p) for p in project_files(tmp_path)) == [".gitignore", "a.py"]


def test_links_out_of_the_project_are_left_out_with_one_warning(tmp_path, caplog):
    project = tmp_path / "project"
    _tree(tmp_path, {"datasets/x.csv": "1", "outside.txt": "secret", "project/a.py": "A", "project/pkg/b.py": "B"})
    (project / "data").symlink_to("../datasets")
    (project / "notes.txt").symlink_to(tmp_path / "outside.txt")
    (project / "dangling").symlink_to("nowhere")
    (project / "pkg_link").symlink_to("pkg")
    (project / "b_copy.py").symlink_to("pkg/b.py")
    with caplog.at_level("WARNING", logger="nbcore"):
        data, _ = pack_project(project, 10_000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
        assert sorted(members) == ["a.py", "b_copy.py", "pkg/b.py"]
        assert members["b_copy.py"].isreg() and tar.extractfile("b_copy.py").read() == b"B"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and all(n in warnings[0] for n in ("data", "notes.txt", "dangling", "pkg_link"))


def test_a_gitignore_that_is_not_utf8_is_read_byte_for_byte_with_one_warning(tmp_path, caplog):
    (tmp_path / ".gitignore").write_bytes(b"# caf\xe9\n*.log\ncaf\xe9.txt\n")
    _tree(tmp_path, {"a.py": "", "x.log": ""})
    (tmp_path / b"caf\xe9.txt".decode("utf-8", "surrogateescape")).write_text("")
    with caplog.at_level("WARNING", logger="nbcore"):
        names = sorted(str(p) for p in project_files(tmp_path))
    assert names == [".gitignore", "a.py"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "is not UTF-8" in warnings[0]


@pytest.fixture
def node_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NBCORE_HOME", str(tmp_path / "node-home"))
    return tmp_path / "node-home"


def test_the_node_store_reuses_only_what_it_verified(tmp_path, node_home):
    from nb_ray import node_store

    _tree(tmp_path / "p", {"a.py": "print(1)", "pkg/b.py": "B"})
    (tmp_path / "p" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "p" / "run.sh").chmod(0o755)
    data, digest = pack_project(tmp_path / "p", 10_000)
    folder = node_home / "ray" / "project" / digest
    folder.mkdir(parents=True)  # an empty folder of that name: not the archive
    assert node_store.stored("project", digest) is None
    with pytest.raises(ValueError, match="damaged: expected sha256 %s" % digest):
        node_store.store("project", digest, data[:-512] + b"\0" * 512 + b"x")
    assert node_store.store("project", digest, data) == str(folder)
    assert (folder / "a.py").read_text() == "print(1)"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in [folder, folder / "pkg", folder / "a.py", folder / "run.sh"]} \
        == {digest: "0o700", "pkg": "0o700", "a.py": "0o600", "run.sh": "0o700"}

    (folder / "a.py").write_text("print(2)")  # damaged after it was stamped: rebuilt from the archive
    (folder / "pkg" / "b.py").unlink()
    assert node_store.stored("project", digest) == str(folder)
    assert (folder / "a.py").read_text() == "print(1)" and (folder / "pkg" / "b.py").read_text() == "B"

    archive = folder.with_name(digest + ".tar")
    archive.write_bytes(archive.read_bytes()[:-1] + b"y")  # a damaged archive is not reused: the host ships again
    assert node_store.stored("project", digest) is None


def test_nbcore_gc_collects_shipped_folders_but_not_one_a_worker_holds(tmp_path, node_home):
    import json

    from nb_ray import node_store
    from nbtest import run_nbcore

    folders = []
    for text in ("one", "two"):
        _tree(tmp_path / text, {"a.py": text})
        data, digest = pack_project(tmp_path / text, 10_000)
        folders.append(node_store.store("project", digest, data))
    held = node_store.hold(folders[1] + "/a.py")
    try:
        home = {"NBCORE_HOME": str(node_home)}
        assert json.loads(run_nbcore("gc", "--older-than", "1", "--json", env=home).stdout) == []
        result = run_nbcore("gc", "--older-than", "0", "--json", env=home)
        assert result.returncode == 0, result.stderr
        [record] = json.loads(result.stdout)
        assert (record["backend"], record["path"], record["reason"]) == ("ray", folders[0], "unused for 0 days")
        assert record["bytes"] > 0
    finally:
        held.close()
    assert not os.path.exists(folders[0]) and not os.path.exists(folders[0] + ".tar")
    assert os.path.isdir(folders[1]), "the folder a worker holds was removed"
    assert [r["path"] for r in json.loads(run_nbcore("gc", "--older-than", "0", "--json", env=home).stdout)] \
        == [folders[1]]
    assert not os.path.exists(folders[1])
