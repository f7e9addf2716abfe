"""Child processes: output read in chunks and passed through as it comes, a bounded tail, whole groups ended."""
import fcntl
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from nbcore import open_backend
from nbcore.errors import InstallError
from nbcore.plugin.process import OutputReader, OutputTail, SubprocessWorker
from nbcore.plugin.progress import Progress

from nbcore.testing import wait_until
from nbtest import clean_environ, write

EMPTY = {"environments": {"demo": {}}}

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


def sleep_token():
    """A ``sleep`` argument no other process has: ``sleep`` accepts fractions, ``ps`` shows the digits."""
    return "1000.%09d" % random.randrange(10 ** 9)


def sleeps_with(token):
    """The pids of live ``sleep TOKEN`` processes (a zombie's command line is empty)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"sleep" and token.encode() in argv[1:]:
            found.append(int(entry))
    return found


class WatchingStream(io.StringIO):
    """A text stream that runs ``on_text(all_text_so_far)`` after every write."""

    def __init__(self, on_text):
        super().__init__()
        self.on_text = on_text

    def write(self, text):
        count = super().write(text)
        self.on_text(self.getvalue())
        return count


def release_when(path, needle):
    def on_text(text):
        if needle in text and not os.path.exists(path):
            open(path, "w").close()
    return on_text


# the tail -------------------------------------------------------------------------------------

def test_output_tail_is_capped_by_lines_and_characters():
    tail = OutputTail(max_lines=3, max_chars=100)
    for n in range(10):
        tail.feed("line %d\n" % n)
    assert tail.lines() == ["line 7", "line 8", "line 9"]
    for _ in range(1000):
        tail.feed("x" * 1000)  # one line of a million characters, never a newline
    assert len(tail.text()) <= 100
    assert tail.lines()[-1] == "x" * 100


def test_output_tail_carriage_return_starts_the_line_over():
    tail = OutputTail()
    for chunk in ["10%", "\r20%", "\r30%\n", "done\r", "\n", "a\r\nb"]:
        tail.feed(chunk)
    assert tail.lines() == ["30%", "done", "a", "b"]


# the reader -----------------------------------------------------------------------------------

def test_output_reader_echoes_carriage_return_updates_before_any_newline():
    read_end, write_end = os.pipe()
    seen = threading.Event()
    stream = WatchingStream(lambda text: "\r  | 2/3" in text and seen.set())
    reader = OutputReader(os.fdopen(read_end, "rb"), stream=stream, prefix="  | ")
    os.write(write_end, b"1/3\r2/3")
    assert seen.wait(20), "the update was held back waiting for a newline: %r" % stream.getvalue()
    os.close(write_end)
    reader.stop()
    assert stream.getvalue() == "  | 1/3\r  | 2/3\n"  # the line ended once the output ended
    assert reader.tail.lines() == ["2/3"]


def test_output_reader_stops_while_another_process_holds_the_pipe():
    read_end, write_end = os.pipe()  # the test keeps the write end, as a grandchild would
    source = os.fdopen(read_end, "rb")
    reader = OutputReader(source, echo=False)
    os.write(write_end, b"last words\n")
    threads = threading.active_count()
    reader.stop()
    assert threading.active_count() == threads - 1, "the reader thread is still waiting for the end of the pipe"
    assert source.closed
    assert reader.tail.lines() == ["last words"]
    os.close(write_end)


def test_output_reader_of_chunks_joins_lines_split_across_chunks():
    reader = OutputReader(iter([b"first li", b"ne\nsec", "ond \u00e9".encode()[:-1], "\u00e9".encode()[-1:]]),
                          echo=False)
    reader.stop()
    assert reader.tail.lines() == ["first line", "second \u00e9"]


# worker handles -------------------------------------------------------------------------------

RSS_SCRIPT = '''
import resource, sys
from nbcore.plugin.process import SubprocessWorker


class Counter:
    count = 0

    def write(self, text):
        self.count += text.count("x")

    def flush(self):
        pass


sys.stderr = counter = Counter()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
worker = SubprocessWorker([sys.executable, "-c", "import sys; sys.stdout.write('x' * 50000000)"], env=None, cwd=".")
worker.wait(None)
worker.kill()
growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(counter.count, len(worker.output_tail()), growth_kib)
'''


def test_worker_output_without_newline_keeps_host_memory_bounded(tmp_path):
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120, env=clean_environ())
    assert out.returncode == 0, out.stderr
    echoed, tail_chars, growth_kib = map(int, out.stdout.split())
    assert echoed == 50000000, "output was lost on the way to stderr"
    assert tail_chars <= OutputTail().max_chars
    assert growth_kib < 30 * 1024, "the host grew by %d MiB reading 50 MB of output" % (growth_kib // 1024)


WORKER_CODE = '''
import os
import subprocess
import sys
import time


def spawn_children(token):
    subprocess.Popen(["sleep", token])
    subprocess.Popen(["sh", "-c", "sleep %s &" % token])  # double fork: reparented, same session and group
    return os.getpid()


def progress_then_wait(release):
    for step in (1, 2, 3):
        sys.stdout.write("\\rnbt-step %d/3" % step)
        sys.stdout.flush()
    deadline = time.monotonic() + 30
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            return "timed out"
        time.sleep(0.01)
    return "released"
'''


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_close_ends_the_workers_children_and_leaks_nothing(workdir):
    write(workdir / "nbt_children.py", WORKER_CODE)
    with open_backend("demo", config=EMPTY, backend="venv") as env:  # warm up: install, staging, caches
        env.call("operator:add", 1, 2)
    fds, threads = open_fds(), threading.active_count()
    tokens = [sleep_token() for _ in range(20)]
    for token in tokens:
        env = open_backend("demo", config=EMPTY, backend="venv", protocol="tcp-pickle")
        env.call("nbt_children:spawn_children", token)
        wait_until(lambda: len(sleeps_with(token)) == 2, 20, "the worker's two sleep children")
        env.close()
        assert threading.active_count() == threads, "a reader thread outlived close()"
    assert open_fds() == fds, "close() leaked file descriptors"
    wait_until(lambda: not any(sleeps_with(token) for token in tokens), 5, "children of closed workers to end")


def test_carriage_return_progress_of_a_worker_reaches_stderr_during_the_call(workdir, monkeypatch):
    write(workdir / "nbt_children.py", WORKER_CODE)
    release = workdir / "released"
    stderr = WatchingStream(release_when(release, "nbt-step 3/3"))
    with open_backend("demo", config=EMPTY, backend="venv") as env:
        monkeypatch.setattr(sys, "stderr", stderr)
        assert env.call("nbt_children:progress_then_wait", str(release)) == "released"
    assert "\rnbt-step 2/3\rnbt-step 3/3" in stderr.getvalue()


def test_subprocess_worker_kill_ends_its_group():
    token = sleep_token()
    worker = SubprocessWorker(["sh", "-c", "sleep %s & sleep %s" % (token, token)], env=None, cwd=".", echo=False)
    wait_until(lambda: len(sleeps_with(token)) == 2, 20, "both sleeps")
    worker.kill()
    worker.kill()  # idempotent
    assert worker.poll() == -signal.SIGKILL
    wait_until(lambda: not sleeps_with(token), 5, "the group to end")


# install steps --------------------------------------------------------------------------------

PROGRESS_STEP = '''
import os, sys, time
for step in (1, 2, 3):
    sys.stdout.write("\\r%d/3" % step)
    sys.stdout.flush()
deadline = time.monotonic() + 30
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.01)
print("\\nreleased" if os.path.exists(sys.argv[1]) else "\\ntimed out")
'''


def test_install_step_progress_streams_before_the_step_ends(tmp_path):
    release = tmp_path / "released"
    stream = WatchingStream(release_when(release, "\r  | 3/3"))
    progress = Progress(stream=stream)
    progress.run([sys.executable, "-c", PROGRESS_STEP, str(release)], step="a step with a progress bar")
    assert progress.tail.lines()[-2:] == ["3/3", "released"]
    assert "  | 1/3\r  | 2/3\r  | 3/3\n  | released\n" in stream.getvalue()


def test_install_step_failure_keeps_a_bounded_tail():
    progress = Progress(quiet=True)
    with pytest.raises(InstallError) as info:
        progress.run([sys.executable, "-c", "import sys; sys.stdout.write('y' * 5000000); sys.exit(3)"], step="flood")
    assert "flood failed (exit code 3)" in str(info.value)
    assert len(str(info.value)) < progress.tail.max_chars + 100
    assert len(progress.tail.text()) <= progress.tail.max_chars


def test_install_step_leaves_nothing_running(tmp_path):
    token = sleep_token()
    progress = Progress(quiet=True)
    progress.run(["sh", "-c", "(sleep %s; echo nbt-late) & echo started" % token], step="a step that forks")
    assert "nbt-late" not in progress.tail.text()
    wait_until(lambda: not sleeps_with(token), 5, "the step's background child to end")


def test_sigterm_of_install_stops_the_script_and_removes_the_half_built_env(tmp_path, nbcore_home):
    token = sleep_token()
    marker = tmp_path / "script-started"
    write(tmp_path / "nbcore.yaml", """
        environments:
          term:
            install_script: "touch %s; sleep %s; echo finished"
        """ % (marker, token))
    cli = subprocess.Popen([sys.executable, "-m", "nbcore", "install", "term", "--backend", "venv"], cwd=str(tmp_path),
                           env=clean_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: marker.exists() and sleeps_with(token) or cli.poll() is not None, 120,
                   "the install script to start")
        assert cli.poll() is None, cli.communicate()
        cli.send_signal(signal.SIGTERM)
        _, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
        cli.wait()
    assert cli.returncode == 143, err
    assert err.strip().splitlines()[-1] == "nbcore: terminated"
    assert "Traceback" not in err
    wait_until(lambda: not sleeps_with(token), 5, "the install script's sleep to end")
    envs = os.path.join(nbcore_home, "envs", "venv")
    left = [name for name in os.listdir(envs) if name.startswith("term-")]
    assert all(name.endswith(".lock") for name in left), "half-built environment left: %s" % left
    for name in left:
        with open(os.path.join(envs, name), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises when the install lock is still held
