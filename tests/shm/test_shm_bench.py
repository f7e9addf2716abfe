"""``nbcore bench`` figures added for nb-shm: the allocate_ndarray frame, the size sweep and its plot."""
import pytest

from nbcore.cli.bench import format_report, format_sweep, plot_sweep, run_bench, run_sweep

from conftest import NUMPY_ENV

pytestmark = pytest.mark.slow  # benchmarks


def test_bench_reports_the_allocate_ndarray_frame(nbcore_home):
    result = run_bench("shmtest", NUMPY_ENV, "venv", quick=True)
    assert result["protocol"] == "shm-pickle5-buffers"
    assert result["frame_to_host_prealloc_ms"] > 0
    assert result["ratios"]["frame_to_host_prealloc_vs_memcpy"] > 0
    assert set(result["first_call_ms"]) == {"frame_to_host", "frame_to_host_prealloc", "frame_to_worker"}
    assert all(ms > 0 for ms in result["first_call_ms"].values())
    assert result["memcpy_to_shared_ms"] > 0 and result["ratios"]["frame_to_worker_vs_memcpy_to_shared"] > 0
    report = format_report(result)
    assert "allocate_ndarray" in report and "first call" in report
    assert "open to first result" in report and "render loop" in report and "into shared memory" in report
    assert "render loop floors, in-process" in report
    plain = result["render_loop"]["plain"]
    assert plain["in_process_one_copy_fps"] > 0 and plain["in_process_socket_fps"] > 0
    assert result["ratios"]["render_loop_vs_in_process_one_copy"] > 0
    assert result["render_loop_torch"] is None  # the environment has no torch
    assert "render loop with torch: not measured (torch is not importable in the environment)" in report


def test_size_sweep_compares_both_protocols(nbcore_home, tmp_path):
    sweep = run_sweep("shmtest", NUMPY_ENV, "venv", quick=True, sizes=(1024, 256 * 1024))
    assert {name: entry["negotiated"] for name, entry in sweep["protocols"].items()} == {
        "tcp-pickle": "tcp-pickle5-buffers", "tcp-pickle,shm-pickle": "shm-pickle5-buffers"}
    for entry in sweep["protocols"].values():
        assert len(entry["to_host_ms"]) == len(entry["to_worker_ms"]) == 2
    assert len(sweep["memcpy_ms"]) == 2
    table = format_sweep(sweep)
    assert "1 KB" in table and "256 KB" in table and "negotiated shm-pickle5-buffers" in table
    pytest.importorskip("matplotlib")
    plot_sweep(sweep, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # with the bench's figures: opening an environment by phase, and the render loop
    bench = {"backend": "venv", "protocol": "shm-pickle5-buffers", "cli_call_ms": 200.0, "open_python_start_ms": 15.0,
             "bare_open_ms": 40.0,
             "open_phases_ms": {"import": 30.0, "plugins": 40.0, "config_and_store": 5.0, "worker": 40.0,
                                "first_call": 1.0},
             "render_loop": {"plain": {"fps": 20.0, "run_ahead_fps": 27.0, "in_process_fps": 30.0,
                                       "in_process_one_copy_fps": 22.0, "in_process_socket_fps": 15.0},
                             "allocated": {"fps": 29.0, "run_ahead_fps": 30.0, "in_process_fps": 30.0,
                                           "in_process_shared_fps": 29.5}},
             "render_frame_mb": 24.9}
    plot_sweep(sweep, tmp_path / "all.png", bench)
    assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bench["render_loop_torch"] = {"torch": "2.13.0+cpu",
                                  "plain": {"fps": 30.0, "run_ahead_fps": 31.0, "in_process_fps": 32.0},
                                  "allocated": {"fps": 31.0, "run_ahead_fps": 32.0, "in_process_fps": 32.0}}
    plot_sweep(sweep, tmp_path / "torch.png", bench)
    assert (tmp_path / "torch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
