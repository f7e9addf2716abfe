"""``kill -9`` of an installer ends its install steps too, so none of them writes into a later build."""
import os
import signal
import subprocess
import sys
import time

import pytest

from nbcore.testing import read_line, wait_gone, wait_until
from nbtest import clean_environ, pid_alive, run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

# The script starts a process that leaves its session (setsid, double fork) and, a while later, writes into
# the environment it was started for; then the script waits for ever.  Its first run (STARTED absent) is
# killed; the second one finishes at once.
CONFIG = '''
environments:
  demo:
    install_script: |
      if [ -e "{started}" ]; then exit 0; fi
      python3 -c '
      import os, sys, time
      os.setsid()
      if os.fork():
          os._exit(0)
      open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
      os.rename(sys.argv[1] + ".tmp", sys.argv[1])
      time.sleep(4)
      open(os.path.join(os.environ["NBCORE_ENV_PATH"], "written-by-an-orphan"), "w").write("x")
      ' "{started}"
      sleep 300 &
      echo $! > "{sleeper}"
      echo step-started
      wait
'''


def test_kill_9_of_the_installer_ends_its_steps(tmp_path):
    started, sleeper = tmp_path / "started", tmp_path / "sleeper"
    write(tmp_path / "nbcore.yaml", CONFIG.format(started=started, sleeper=sleeper))
    installer = subprocess.Popen([sys.executable, "-m", "nbcore", "install", "demo", "--backend", "venv"],
                                 cwd=str(tmp_path), env=clean_environ(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    try:
        while "step-started" not in read_line(installer.stderr, 120):
            pass
        wait_until(lambda: started.exists() and sleeper.exists(), 30, "the step's children to write their pids")
        escapee, background = int(started.read_text()), int(sleeper.read_text())
        installer.kill()
        installer.wait()
        wait_gone(escapee)
        wait_gone(background)
    finally:
        installer.kill()
        installer.wait()
    result = run_nbcore("install", "demo", "--backend", "venv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    time.sleep(5)  # longer than the escapee would have waited before writing
    built = [line.rsplit(" into ", 1)[-1] for line in result.stderr.splitlines() if "installing environment" in line]
    assert len(built) == 1, result.stderr
    assert not os.path.exists(os.path.join(built[0], "written-by-an-orphan")), \
        "an install step of the killed installer wrote into the new build"


def test_a_rebuild_kills_what_an_interrupted_install_left_running(tmp_path):
    """Even a survivor whose guard was killed too (no death signal reached it) never writes into the rebuild."""
    from nbcore.plugin.store import ensure_installed, make_environment
    from nbcore.plugin.process import INSTALL_STEP_VARIABLE
    from nbcore.spec import EnvironmentSpec
    from test_store import CountingBackend, QuietProgress

    provider = CountingBackend()
    env = make_environment(tmp_path, provider, "demo", EnvironmentSpec(packages=("x",)))
    env.path.mkdir(parents=True)  # unfinished: no ready marker
    code = "import os, sys, time; time.sleep(4); open(os.path.join(sys.argv[1], 'late'), 'w').write('x')"
    survivor = subprocess.Popen([sys.executable, "-c", code, str(env.path)], start_new_session=True,
                                env=dict(clean_environ(), **{INSTALL_STEP_VARIABLE: str(env.path)}))
    try:
        progress = QuietProgress()
        assert ensure_installed(provider, env, progress) is True
        assert survivor.wait(5) == -signal.SIGKILL
        assert any("killed 1 process" in step for step in progress.steps), progress.steps
        assert not (env.path / "late").exists()
    finally:
        survivor.kill()
        survivor.wait()
