"""Every process a process started, even those that left its process group, and how to end them all.

A process group does not hold a child that calls ``setsid`` (a daemon's double
fork): killing the group misses it.  On Linux a process can instead be made a
*child subreaper* (``PR_SET_CHILD_SUBREAPER``): every orphan among its
descendants is re-parented to it rather than to init, so all of them stay in
its tree of ``/proc/<pid>/stat`` parent links for as long as it lives, and
:func:`descendants` finds them there.  The worker makes itself one at start
and ends its tree when it exits or its host goes away; the host ends the tree
of a worker or install step it kills.

Run as a script (``python descendants.py PARENT_PID COMMAND...``) this module
is the *guard* of an install step: it runs COMMAND as a subreaper, dies with
PARENT_PID (``PR_SET_PDEATHSIG``), and ends everything COMMAND started when the
command ends or its parent goes away.  Standard library only, Python 3.7+;
elsewhere than Linux it degrades to a plain wrapper.
"""
import os
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Rounds of :func:`end_descendants`: each kills what the previous round's processes started meanwhile.
ROUNDS = 20


def _prctl(option, value):
    """``prctl(option, value)``; False where it is not available (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper():
    """Make this process the subreaper of its descendants (Linux); False when it cannot be one."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _parents():
    """``{pid: parent pid}`` of every live process (zombies left out: they have no children and cannot act)."""
    parents = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return parents
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields and fields[0] != b"Z":
            parents[int(name)] = int(fields[1])
    return parents


def descendants(pid):
    """The pids of every live process below ``pid`` in the tree of parent links."""
    children = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    return found


def end_descendants(pid=None, reap=False):
    """SIGKILL every descendant of ``pid`` (default: this process) until none is left; ``reap``: also collect
    the exit status of this process's own children (a subreaper's orphans become its children)."""
    import signal  # here: the worker imports this module at its start, and needs signal only when it ends

    pid = os.getpid() if pid is None else pid
    for _ in range(ROUNDS):
        found = descendants(pid)
        for child in found:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        if reap:
            _reap()
        if not found:
            return


def _reap():
    while True:
        try:
            child, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if child == 0:
            return


def guard(parent, argv):
    """Run ``argv`` until it ends or ``parent`` dies, then end everything it started; return its exit code."""
    import signal
    import subprocess  # here: the worker imports this module, and needs no subprocess

    become_subreaper()
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)
        end_descendants()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        return 128 + signal.SIGTERM
    try:
        command = subprocess.Popen(argv)
    except OSError as exc:
        sys.stderr.write("%s: %s\n" % (argv[0], exc.strerror or exc))
        return 127
    while True:
        try:
            code = command.wait()
            break
        except InterruptedError:
            continue
    end_descendants(reap=True)
    if stop:
        return 128 + stop[0]
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(guard(int(sys.argv[1]), sys.argv[2:]))
