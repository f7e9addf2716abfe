"""``nbcore bench`` without numpy (in the environment, on the host) and its size sweep's keys."""
import json
import pickle
import subprocess
import sys

import pytest

from nbtest import check_bench_figures, clean_environ

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

#: Runs the CLI in a host process that cannot import numpy.
NO_NUMPY_HOST = "import sys; sys.modules['numpy'] = None; from nbcore.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_bench_on_an_environment_without_numpy(tmp_path):
    """No ENV: the documented default, an empty spec (no numpy there); frames are plain buffers."""
    result = subprocess.run([sys.executable, "-m", "nbcore", "bench", "--quick", "--backend", "venv", "--json"],
                            cwd=str(tmp_path), env=clean_environ(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["frame_is_numpy"] is False
    assert data["render_loop_torch"] is None and not [r for r in data["ratios"] if "torch" in r]
    check_bench_figures(data)


@pytest.mark.parametrize("plugins", [{}, {"NBCORE_DISABLE_PLUGINS": "nb-shm"}], ids=["default", "without-nb-shm"])
def test_bench_on_a_host_without_numpy(tmp_path, plugins):
    result = subprocess.run([sys.executable, "-c", NO_NUMPY_HOST, "bench", "--quick", "--backend", "venv"],
                            cwd=str(tmp_path), env=clean_environ(plugins), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "frame to host, allocate_buffer" in result.stdout
    assert "render loop with torch: not measured (frames are not numpy arrays" in result.stdout
    assert "render loop floors, in-process: each frame copied once into shared memory" in result.stdout
    if plugins:
        assert "protocol tcp-pickle5-buffers" in result.stdout


def test_the_render_loop_floors_pass_each_frame_on_after_its_copy_or_send():
    from nbcore.cli.bench.references import SocketReference
    from nbcore.cli.bench.render_loop import _copied_once, _sent_through

    frames = [pickle.PickleBuffer(bytearray([i]) * 4096) for i in (1, 2)]
    target = memoryview(bytearray(4096))
    seen = []
    for frame in _copied_once(iter(frames), target):
        seen.append(frame)
        assert bytes(target) == bytes(memoryview(frame))
    assert seen == frames
    sockets = SocketReference(4096)
    try:
        assert list(_sent_through(iter(frames), sockets)) == frames  # the peer answered each frame
    finally:
        sockets.close()


def test_plain_buffer_frames_are_what_allocate_ndarray_would_give():
    from nbcore.worker import bench_targets

    assert bench_targets.use_numpy(False) is False
    try:
        parts = bench_targets.allocated_frame()
        assert [memoryview(p).nbytes for p in parts] == bench_targets.frame_nbytes() == [4 * 1080 * 1920 * 3,
                                                                                         4 * 1080 * 1920]
        assert [memoryview(p).nbytes for p in bench_targets.frame()] == bench_targets.frame_nbytes()
    finally:
        bench_targets.use_numpy(False)  # drops the cached frame


def test_torch_render_loop_frames_are_the_same_every_way():
    """Fresh arrays, allocate_ndarray arrays and run_ahead give the same frames (not timed: the bench times them)."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("torch")
    from nbcore.worker import bench_targets, bench_torch

    plain = list(bench_torch.render_loop(3, False))
    assert all(f.shape == bench_targets.RENDER_SHAPE and f.dtype == np.float32 and f.flags.c_contiguous
               for f in plain)
    assert 0 <= plain[0].min() and plain[0].max() <= 1 and not np.array_equal(plain[0], plain[1])
    for frames in (bench_targets.in_process(bench_torch.render_loop(3, True)), bench_torch.render_loop(3, False, 1)):
        for expected, frame in zip(plain, frames):
            np.testing.assert_array_equal(frame, expected)
    assert bench_torch.in_process_fps(1, True) > 0


def test_torch_version_is_none_without_torch(monkeypatch):
    from nbcore.worker import bench_torch

    monkeypatch.setitem(sys.modules, "torch", None)
    assert bench_torch.torch_version() is None


def test_allocate_ndarray_without_numpy_says_what_to_use(monkeypatch):
    from nbcore.worker import allocation

    monkeypatch.setattr(allocation, "_numpy", None)
    monkeypatch.setattr(allocation, "_dtypes", {})
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(ImportError, match=r"allocate_ndarray needs numpy.*allocate_buffer\(nbytes\)"):
        allocation.allocate_ndarray((2, 2), "float32")


def test_sweep_keys_each_protocol_list_asked_for(fresh_registry, monkeypatch):
    """Without nb-shm both lists negotiate tcp-pickle: neither run may overwrite the other."""
    from nbcore.cli.bench import format_sweep, run_sweep

    monkeypatch.setenv("NBCORE_DISABLE_PLUGINS", "nb-shm")
    sweep = run_sweep(backend="venv", quick=True, sizes=(1024, 64 * 1024),
                      protocols=("tcp-pickle", "tcp-pickle,shm-pickle"))
    assert {name: entry["negotiated"] for name, entry in sweep["protocols"].items()} == {
        "tcp-pickle": "tcp-pickle5-buffers", "tcp-pickle,shm-pickle": "tcp-pickle5-buffers"}
    for entry in sweep["protocols"].values():
        assert len(entry["to_host_ms"]) == len(entry["to_worker_ms"]) == 2
    table = format_sweep(sweep)
    assert "tcp-pickle,shm-pickle: negotiated tcp-pickle5-buffers" in table


def test_the_sweep_runs_the_installed_protocols(fresh_registry, monkeypatch):
    from nbcore.cli.bench import sweep_protocol_lists

    assert sweep_protocol_lists(fresh_registry()) == (
        ["tcp-pickle", "tcp-pickle,shm-pickle"] if "shm-pickle" in fresh_registry().protocols else ["tcp-pickle"])
    monkeypatch.setenv("NBCORE_DISABLE_PLUGINS", "nb-shm")
    monkeypatch.setattr("nbcore.plugin.registry._registry", None)
    assert sweep_protocol_lists(fresh_registry()) == ["tcp-pickle"]
