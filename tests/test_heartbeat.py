"""A long silent install step says it is alive: a heartbeat line on stderr, and an event in nbcore install --json."""
import json

import pytest

from nbcore.plugin.progress import Progress
from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


class Stream:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_a_silent_step_gets_heartbeats_and_output_resets_them(monkeypatch):
    monkeypatch.setenv("NBCORE_HEARTBEAT_SECONDS", "0.4")
    events, stream = [], Stream()
    Progress(stream=stream, on_event=events.append).run(["sh", "-c", "sleep 1; echo done"], step="solving")
    beats = [e for e in events if e["event"] == "heartbeat"]
    assert 1 <= len(beats) <= 3 and all(e["step"] == "solving" for e in beats)
    assert beats[0]["silent"] >= 0.4 and beats[-1]["elapsed"] >= beats[0]["elapsed"]
    assert "nbcore: still running: solving (no output for 0 s, 0 s in all)\n" in stream.text
    events.clear()
    Progress(stream=Stream(), on_event=events.append).run(["sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done"],
                                                          step="chatty")
    assert [e["event"] for e in events] == ["step"], "a step that prints needs no heartbeat"


def test_the_default_period_is_30_seconds(monkeypatch):
    from nbcore.plugin.progress import heartbeat_seconds

    monkeypatch.delenv("NBCORE_HEARTBEAT_SECONDS", raising=False)
    assert heartbeat_seconds() == 30.0


def test_nbcore_install_json_streams_the_heartbeat(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  beat:\n    install_script: sleep 1.5\n")
    result = run_nbcore("install", "beat", "--backend", "venv", "--json", cwd=tmp_path,
                        env={"NBCORE_HEARTBEAT_SECONDS": "0.5"})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    beats = [e for e in events if e["event"] == "heartbeat"]
    assert any(e["step"] == "running install_script" for e in beats), events
    assert events[-1]["event"] == "done" and events[-1]["backend"] == "venv" and events[-1]["built"] is True
    assert "nbcore: still running: running install_script (no output for " in result.stderr
