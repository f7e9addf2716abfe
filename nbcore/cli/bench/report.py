"""The bench's figures for people: text lines (:func:`format_report`, :func:`format_sweep`) and the plot
(:func:`plot_sweep`, with matplotlib)."""
from ...errors import UserError
from .render_loop import RUN_AHEAD


def _size_label(nbytes):
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if nbytes >= scale:
            return "%g %s" % (nbytes / scale, unit)
    return "%d B" % nbytes


def _gbps(sizes, times_ms):
    return [n / (t / 1e3) / 1e9 for n, t in zip(sizes, times_ms)]


def format_sweep(sweep):
    """Throughput table of :func:`run_sweep` (GB/s)."""
    names = list(sweep["protocols"])
    columns = ["%s %s" % (n, d) for n in names for d in ("->host", "->worker")] + ["memcpy"]
    width = max(len(c) for c in columns)
    lines = ["%s: negotiated %s" % (n, sweep["protocols"][n]["negotiated"]) for n in names]
    lines.append("throughput GB/s   " + "  ".join("%*s" % (width, c) for c in columns))
    sizes = sweep["sizes"]
    series = []
    for name in names:
        series += [_gbps(sizes, sweep["protocols"][name]["to_host_ms"]),
                   _gbps(sizes, sweep["protocols"][name]["to_worker_ms"])]
    series.append(_gbps(sizes, sweep["memcpy_ms"]))
    for i, nbytes in enumerate(sizes):
        lines.append("%-16s  " % _size_label(nbytes) + "  ".join("%*.2f" % (width, s[i]) for s in series))
    return "\n".join(lines)


def plot_sweep(sweep, path, bench=None):
    """Draw throughput against message size for each protocol and direction into ``path`` (needs matplotlib);
    with ``bench`` (a :func:`run_bench` result), also open to first result by phase and the render loop."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'nbcore[plot]'") from None
    sizes = sweep["sizes"]
    if bench is None:
        fig, ax = plt.subplots(figsize=(9, 5.5))
    else:
        fig = plt.figure(figsize=(13, 9))
        grid = fig.add_gridspec(2, 2, height_ratios=(3, 2))
        ax = fig.add_subplot(grid[0, :])
        _plot_open(fig.add_subplot(grid[1, 0]), bench)
        _plot_render_loop(fig.add_subplot(grid[1, 1]), bench)
    for name, entry in sweep["protocols"].items():
        name = "%s (%s)" % (name, entry["negotiated"])
        line, = ax.plot(sizes, _gbps(sizes, entry["to_host_ms"]), marker="o", label=name + ", worker -> host")
        ax.plot(sizes, _gbps(sizes, entry["to_worker_ms"]), marker="s", linestyle="--", color=line.get_color(),
                label=name + ", host -> worker")
    ax.plot(sizes, _gbps(sizes, sweep["memcpy_ms"]), color="grey", linestyle=":", label="memcpy (reference)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([_size_label(n) for n in sizes], rotation=30)
    ax.set_xlabel("message size")
    ax.set_ylabel("throughput (GB/s, one call incl. round trip)")
    ax.set_title("nbcore: transfer throughput by protocol")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_open(ax, bench):
    """Stacked bars: the phases of open to first result, beside the bare open and the environment's python -c pass."""
    left = 0.0
    for name, ms in bench["open_phases_ms"].items():
        ax.barh("open to first result", ms, left=left, label=name.replace("_", " "))
        left += ms
    ax.barh("nbcore call", bench["cli_call_ms"], color="grey")
    if bench.get("bare_open_ms") is not None:
        ax.barh("bare open (no framework)", bench["bare_open_ms"], color="dimgrey")
    ax.barh("python -c pass (env)", bench["open_python_start_ms"], color="black")
    ax.set_xlabel("ms (fresh host process)")
    ax.set_title("opening an environment (%s, %s)" % (bench["backend"], bench["protocol"]))
    ax.legend(fontsize="small")


def _plot_render_loop(ax, bench):
    """Grouped bars: the render loops' frames/s through the worker, with and without run-ahead, as a ratio to
    the same loop in-process; plain and allocated, with numpy and, when the environment has it, torch; lines
    across the numpy plain group mark its floors (the loop in-process plus one copy, or plus the socket)."""
    loops = [(bench["render_loop"], "numpy")]
    if bench.get("render_loop_torch") is not None:
        loops.append((bench["render_loop_torch"], "torch"))
    groups = [(loop[kind], "%s\n%s\n%.0f frames/s in-process" % (name, label, loop[kind]["in_process_fps"]))
              for loop, name in loops for kind, label in (("plain", "fresh arrays"), ("allocated", "allocate_ndarray"))]
    bars = (("fps", "worker generator"), ("run_ahead_fps", "worker generator, run_ahead(%d)" % RUN_AHEAD))
    for offset, (key, label) in enumerate(bars):
        ax.bar([i + 0.4 * offset for i in range(len(groups))],
               [figures[key] / figures["in_process_fps"] for figures, _ in groups], width=0.4, label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, label="in-process")
    floors = (("in_process_one_copy_fps", "in-process, each frame copied once into shared memory", "--"),
              ("in_process_socket_fps", "in-process, each frame sent through a loopback TCP socket", ":"),
              ("in_process_shared_fps", "in-process, each frame rendered in shared memory", "-."))
    for key, label, style in floors:
        at = [(i, figures[key] / figures["in_process_fps"]) for i, (figures, _) in enumerate(groups) if key in figures]
        for n, (i, ratio) in enumerate(at):
            ax.hlines(ratio, i - 0.25, i + 0.65, color="black", linestyles=style, label=None if n else label)
    ax.set_xticks([i + 0.2 for i in range(len(groups))])
    ax.set_xticklabels([label for _, label in groups], fontsize="x-small")
    ax.set_ylabel("frames/s, x in-process (%.1f MB frames)" % bench["render_frame_mb"])
    ax.set_title("render loop")
    ax.set_ylim(0, 1.75 * max([1.0] + [figures[key] / figures["in_process_fps"] for figures, _ in groups
                                      for key, _ in bars]))  # room for the legend
    ax.legend(fontsize="small", loc="upper left")


def format_report(result):
    """Human-readable lines for ``nbcore bench`` without ``--json``."""
    r, x = result, result["ratios"]
    allocator = "allocate_ndarray" if r["frame_is_numpy"] else "allocate_buffer"
    return "\n".join([
        "backend %s, protocol %s, worker Python %s" % (r["backend"], r["protocol"], r["worker_python"]),
        "no-op call      median %8.1f us  p99 %8.1f us   %.2fx Pipe (%.1f us)" % (
            r["noop_us_median"], r["noop_us_p99"], x["noop_vs_pipe"], r["pipe_noop_us_median"]),
        "frame to host   %8.2f ms  %.2fx memcpy (%.2f ms for %.1f MB)" % (
            r["frame_to_host_ms"], x["frame_to_host_vs_memcpy"], r["memcpy_ms"], r["frame_mb"]),
        "frame to host, %s %6.3f ms  %.3fx memcpy" % (
            allocator, r["frame_to_host_prealloc_ms"], x["frame_to_host_prealloc_vs_memcpy"]),
        "frame to worker %8.2f ms  %.2fx memcpy" % (r["frame_to_worker_ms"], x["frame_to_worker_vs_memcpy"]),
        "bare loopback TCP socket, the same bytes: to host %.2f ms, to peer %.2f ms; frame to host %.2fx it, "
        "frame to worker %.2fx it" % (r["tcp_socket_ms"]["to_host"], r["tcp_socket_ms"]["to_peer"],
                                      x["frame_to_host_vs_tcp_socket"], x["frame_to_worker_vs_tcp_socket"]),
        "first call after a memcpy block: frame to host %.2f ms, %s %.3f ms, frame to worker %.2f ms" % (
            r["first_call_ms"]["frame_to_host"], allocator, r["first_call_ms"]["frame_to_host_prealloc"],
            r["first_call_ms"]["frame_to_worker"]),
        "start           %8.1f ms  %.2fx python -c pass (%.1f ms)" % (
            r["start_ms"], x["start_vs_python_start"], r["python_start_ms"]),
        "open to first result, fresh host process %6.1f ms  %.2fx python -c pass (%.1f ms); %s" % (
            r["open_to_first_result_ms"], x["open_to_first_result_vs_python_start"], r["open_python_start_ms"],
            ", ".join("%s %.1f" % item for item in r["open_phases_ms"].items())),
        _format_bare_open(r),
        "nbcore call      %8.1f ms  %.2fx the host's and the env's python -c pass (%.1f + %.1f ms)" % (
            r["cli_call_ms"], x["cli_call_vs_pythons_start"], r["host_python_start_ms"], r["open_python_start_ms"]),
        "render loop     %8.1f frames/s  %.2fx in-process (%.1f); %s %.1f frames/s  %.2fx in-process (%.1f)" % (
            r["render_loop"]["plain"]["fps"], x["render_loop_vs_in_process"], r["render_loop"]["plain"]["in_process_fps"],
            allocator, r["render_loop"]["allocated"]["fps"], x["render_loop_allocated_vs_in_process"],
            r["render_loop"]["allocated"]["in_process_fps"]),
        "render loop, run_ahead(%d) %6.1f frames/s  %.2fx in-process; %s %.1f frames/s  %.2fx in-process" % (
            RUN_AHEAD, r["render_loop"]["plain"]["run_ahead_fps"], x["render_loop_run_ahead_vs_in_process"],
            allocator, r["render_loop"]["allocated"]["run_ahead_fps"],
            x["render_loop_allocated_run_ahead_vs_in_process"]),
        "render loop floors, in-process: each frame copied once into shared memory %.1f frames/s (render loop "
        "%.2fx it, run_ahead(%d) %.2fx); each frame sent through a bare loopback TCP socket %.1f frames/s "
        "(%.2fx, run_ahead(%d) %.2fx)" % (
            r["render_loop"]["plain"]["in_process_one_copy_fps"], x["render_loop_vs_in_process_one_copy"], RUN_AHEAD,
            x["render_loop_run_ahead_vs_in_process_one_copy"], r["render_loop"]["plain"]["in_process_socket_fps"],
            x["render_loop_vs_in_process_socket"], RUN_AHEAD, x["render_loop_run_ahead_vs_in_process_socket"]),
        "%s render loop floor, in-process: each frame rendered in already-touched shared memory %.1f frames/s "
        "(render loop %.2fx it, run_ahead(%d) %.2fx)" % (
            allocator, r["render_loop"]["allocated"]["in_process_shared_fps"],
            x["render_loop_allocated_vs_in_process_shared"], RUN_AHEAD,
            x["render_loop_allocated_run_ahead_vs_in_process_shared"]),
        _format_torch_render_loop(r),
    ] + ([] if r["memcpy_to_shared_ms"] is None else [
        "frame to worker %.2fx memcpy into shared memory (%.2f ms)" % (
            x["frame_to_worker_vs_memcpy_to_shared"], r["memcpy_to_shared_ms"])]))


def _format_bare_open(result):
    """The bare open's line, or why it was not measured."""
    if result["bare_open_ms"] is None:
        return "bare open: not measured (the %s backend runs no commands)" % result["backend"]
    x = result["ratios"]
    return ("bare open (a host and worker of subprocess, socket and pickle, no framework) %6.1f ms  %.2fx python -c "
            "pass; open to first result %.2fx it" % (result["bare_open_ms"], x["bare_open_vs_python_start"],
                                                      x["open_to_first_result_vs_bare_open"]))


def _format_torch_render_loop(result):
    """The torch render loop's line, or why it was not measured."""
    loop = result["render_loop_torch"]
    if loop is None:
        return "render loop with torch: not measured (%s)" % (
            "torch is not importable in the environment" if result["frame_is_numpy"]
            else "frames are not numpy arrays: numpy is missing on one end")
    x = result["ratios"]
    return ("render loop with torch %s (in-process in the worker: %.1f frames/s, allocate_ndarray %.1f): "
            "%.2fx in-process, run_ahead(%d) %.2fx; allocate_ndarray %.2fx, run_ahead(%d) %.2fx" % (
                loop["torch"], loop["plain"]["in_process_fps"], loop["allocated"]["in_process_fps"],
                x["render_loop_torch_vs_in_process"], RUN_AHEAD, x["render_loop_torch_run_ahead_vs_in_process"],
                x["render_loop_torch_allocated_vs_in_process"], RUN_AHEAD,
                x["render_loop_torch_allocated_run_ahead_vs_in_process"]))
