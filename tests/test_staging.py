"""The staged worker code: modes whatever the umask, verified before reuse, repaired when damaged; the archive."""
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from nbcore.host.staging import stage_worker, worker_archive
from nbcore.plugin.staging import STAMP
from nbcore.plugin.registry import get_registry

RPC = "nbcore/worker/rpc.py"


def modules():
    return [p.worker_module for p in get_registry().protocols.values()]


@pytest.fixture
def umask_000():
    previous = os.umask(0)
    yield
    os.umask(previous)


def writable_by_others(folder):
    found = []
    for path, subfolders, names in os.walk(str(folder)):
        for entry in [path] + [os.path.join(path, n) for n in names]:
            if os.lstat(entry).st_mode & 0o022:
                found.append(entry)
    return found


def staged_files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_staged_code_is_writable_by_nobody_else_under_umask_000(tmp_path, umask_000):
    folder = stage_worker(tmp_path / "home", modules())
    assert (folder / RPC).is_file()
    assert writable_by_others(tmp_path / "home" / "worker") == []
    assert oct((folder / RPC).stat().st_mode & 0o777) == "0o644"
    assert oct((folder / "nbcore").stat().st_mode & 0o777) == "0o755"


def test_a_deleted_file_is_restored_by_the_next_stage(tmp_path):
    folder = stage_worker(tmp_path, modules())
    expected = staged_files(folder)
    (folder / RPC).unlink()
    assert stage_worker(tmp_path, modules()) == folder
    assert staged_files(folder) == expected


@pytest.mark.parametrize("change", ["appended", "same-size", "group-writable", "extra-file"])
def test_a_damaged_copy_is_rebuilt_by_the_next_stage(tmp_path, umask_000, change):
    folder = stage_worker(tmp_path, modules())
    expected = staged_files(folder)
    rpc = folder / RPC
    if change == "appended":
        rpc.write_bytes(rpc.read_bytes() + b"\nimport os; os.system('echo owned')\n")
    elif change == "same-size":
        data = rpc.read_bytes()
        rpc.write_bytes(b"#" + data[1:] if data[:1] != b"#" else b" " + data[1:])
    elif change == "group-writable":
        rpc.chmod(0o666)
    else:
        (folder / "sitecustomize.py").write_text("print('owned')\n")
    assert stage_worker(tmp_path, modules()) == folder
    assert staged_files(folder) == expected
    assert writable_by_others(folder) == []
    assert [p.name for p in tmp_path.joinpath("worker").iterdir()] == [folder.name], "leftovers beside the folder"


def test_a_symlink_in_place_of_the_folder_is_replaced(tmp_path):
    folder = stage_worker(tmp_path, modules())
    elsewhere = tmp_path / "elsewhere"
    folder.rename(elsewhere)
    folder.symlink_to(elsewhere)
    assert stage_worker(tmp_path, modules()) == folder
    assert folder.is_dir() and not folder.is_symlink()


def test_worker_archive_is_deterministic_and_holds_the_staged_files(tmp_path):
    data, digest = worker_archive(modules())
    again = subprocess.run([sys.executable, "-c", "from nbcore.host.staging import worker_archive; "
                            "from nbcore.plugin.registry import get_registry; import sys; "
                            "sys.stdout.write(worker_archive([p.worker_module for p in "
                            "get_registry().protocols.values()])[1])"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout == digest, "another process packed other bytes"
    assert worker_archive(modules()) == (data, digest)
    folder = stage_worker(tmp_path, modules())
    stamp = (folder / STAMP).read_text().strip()
    assert len(stamp) == 64 and folder.name == stamp[:16]  # named by the files' own hash, no archive built
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        packed = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
    assert packed == {k: v for k, v in staged_files(folder).items() if k != STAMP}
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644} and {m.mode for m in members if m.isdir()} == {0o755}


STAGE = ("import sys; from pathlib import Path; from nbcore.host.staging import stage_worker; "
         "from nbcore.plugin.registry import get_registry; sys.stdout.write(str(stage_worker(Path(sys.argv[1]), "
         "[p.worker_module for p in get_registry().protocols.values()])))")


def stage_in_processes(home, count=4):
    """Stage into ``home`` from ``count`` processes at once; return the folder they all got."""
    processes = [subprocess.Popen([sys.executable, "-c", STAGE, str(home)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(count)]
    results = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0] * count, results
    (folder,) = {out for out, _ in results}
    assert [p.name for p in (home / "worker").iterdir()] == [os.path.basename(folder)], "leftovers"
    return Path(folder)


def test_processes_staging_at_once_agree_on_one_folder(tmp_path):
    folder = stage_in_processes(tmp_path)
    (folder / RPC).unlink()
    assert stage_in_processes(tmp_path) == folder
    assert (folder / RPC).is_file()
