"""What docs/cli.md and docs/configuration.md promise of ``nbcore doctor``, ``nbcore bench`` and ``NBCORE_CONFIG``."""
import sys

import pytest

import nbcore

from nbtest import SHM_INSTALLED, cli_json, run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env")

DOCTOR_KEYS = {"nbcore", "python", "home", "uv", "backends", "protocols", "config", "environments", "problems", "notes",
               "interpreters", "not_installed"}
HOST_PYTHON = "%d.%d.%d" % sys.version_info[:3]


@pytest.fixture
def home(tmp_path):
    """An empty ``NBCORE_HOME`` of this test's own, so the figures doctor prints are known."""
    return tmp_path / "home"


def test_doctor_json_has_the_documented_keys_and_names_a_missing_config(home, tmp_path):
    report = cli_json("doctor", "--json", cwd=tmp_path, env={"NBCORE_HOME": str(home)})
    assert set(report) == DOCTOR_KEYS
    assert report["nbcore"] == nbcore.__version__ and report["python"] == HOST_PYTHON
    assert report["home"]["path"] == str(home) and report["home"]["set_by"] == "NBCORE_HOME"
    assert report["backends"]["venv"] == {"available": True, "reason": None}
    assert report["backends"]["python"] == {"available": True, "reason": None}
    assert report["protocols"]["tcp-pickle"] == {"available": True, "reason": None}
    assert ("shm-pickle" in report["protocols"]) == SHM_INSTALLED
    assert report["config"] is None
    assert "no config file found: create nbcore.yaml or pass -c FILE" in report["problems"]


def test_doctor_text_reports_version_cache_backends_and_problems(home, tmp_path):
    result = run_nbcore("doctor", cwd=tmp_path, env={"NBCORE_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "nbcore %s on Python %s" % (nbcore.__version__, HOST_PYTHON)
    assert any(line.startswith("cache: %s (NBCORE_HOME" % home) for line in lines), lines
    assert any(line.split() == ["backend", "venv", "ok"] for line in lines), lines
    assert "problem: no config file found: create nbcore.yaml or pass -c FILE" in lines


def test_nbcore_config_names_the_config_file(home, tmp_path):
    config = write(tmp_path / "elsewhere" / "project.yaml", "environments:\n  from-variable: {}\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    variables = {"NBCORE_HOME": str(home), "NBCORE_CONFIG": str(config)}
    report = cli_json("doctor", "--json", cwd=cwd, env=variables)
    assert report["config"] == {"path": str(config), "environments": ["from-variable"]}
    data = cli_json("call", "from-variable", "operator:add", "--args", "[2, 3]", "--backend", "python", "--json",
                    cwd=cwd, env=variables)
    assert data["result"] == 5


def test_config_option_wins_over_nbcore_config(home, tmp_path):
    ignored = write(tmp_path / "ignored.yaml", "environments:\n  ignored: {}\n")
    chosen = write(tmp_path / "chosen.yaml", "environments:\n  chosen: {}\n")
    report = cli_json("doctor", "-c", chosen, "--json", cwd=tmp_path,
                      env={"NBCORE_HOME": str(home), "NBCORE_CONFIG": str(ignored)})
    assert report["config"] == {"path": str(chosen), "environments": ["chosen"]}


def test_missing_nbcore_config_file_is_one_line(home, tmp_path):
    missing = tmp_path / "no-such.yaml"
    result = run_nbcore("call", "demo", "operator:add", "--args", "[1, 2]", cwd=tmp_path,
                        env={"NBCORE_HOME": str(home), "NBCORE_CONFIG": str(missing)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nbcore: error: config file %s not found (pass -c FILE or set NBCORE_CONFIG)" % missing]


@pytest.mark.slow
def test_bench_quick_json_reports_every_documented_figure(nbcore_home, tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  benched: {packages: [numpy]}\n")
    data = cli_json("bench", "benched", "--backend", "venv", "--quick", "--json", cwd=tmp_path)
    assert data["backend"] == "venv" and data["worker_python"] == HOST_PYTHON
    assert data["protocol"] == ("shm-pickle5-buffers" if SHM_INSTALLED else "tcp-pickle5-buffers")
    for figure in ("noop_us_median", "noop_us_p99", "pipe_noop_us_median", "frame_to_host_ms",
                   "frame_to_worker_ms", "memcpy_ms", "start_ms", "python_start_ms"):
        assert data[figure] > 0, figure
    assert data["frame_mb"] > 1 and data["frame_is_numpy"] is True
    assert data["ratios"] and all(value > 0 for value in data["ratios"].values())
