"""``nbcore doctor`` checks the project: each environment's backend and why, built or not, its Python."""
import json

import pytest

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

ONLY_BUILTINS = {"NBCORE_DISABLE_PLUGINS": "nb-conda,nb-docker,nb-apptainer,nb-ray"}


def test_doctor_reports_each_environment_and_missing_plugins_are_notes(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  built: {}\n  fresh: {packages: [six]}\n"
                                    "  ancient: {python: '2.1', backends: [venv]}\n")
    result = run_nbcore("install", "built", cwd=tmp_path, env=ONLY_BUILTINS)
    assert result.returncode == 0, result.stderr
    result = run_nbcore("doctor", "--json", cwd=tmp_path, env=ONLY_BUILTINS)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    envs = {e["name"]: e for e in report["environments"]}
    assert envs["built"]["backend"] == "venv" and envs["built"]["built"] is True
    assert envs["built"]["why"].startswith("automatic: the first available of ")
    assert envs["built"]["problem"] is None and "/venv/bin/python" in envs["built"]["python"]
    assert envs["fresh"]["built"] is False and envs["fresh"]["problem"] is None
    assert "available to build with" in envs["fresh"]["python"]
    assert envs["ancient"]["problem"] and "2.1" in envs["ancient"]["problem"]
    assert any(p.startswith("environment ancient: ") for p in report["problems"])
    assert not any("not installed" in p for p in report["problems"]), "optional plugins are information"
    assert "optional conda is not installed (pip install nb-conda adds it)" in report["notes"]

    text = run_nbcore("doctor", cwd=tmp_path, env=ONLY_BUILTINS)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert any(line.startswith("env built ") and "backend venv (automatic" in line and "built at " in line
               for line in lines), lines
    assert any(line.startswith("env fresh ") and "not built yet" in line for line in lines), lines
    assert "note: optional conda is not installed (pip install nb-conda adds it)" in lines


def test_doctor_without_problems_says_so(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  plain: {}\n")
    result = run_nbcore("doctor", cwd=tmp_path, env=dict(ONLY_BUILTINS, PATH="/usr/bin:/bin"))
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("problem:")] == []
    assert "no problems found" in result.stdout
