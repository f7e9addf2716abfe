"""What ``install_script`` sees on the venv backend (docs/configuration.md): the activated env, NBCORE_ENV_PATH."""
import json

import pytest

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

SCRIPT = 'printf "%s\\n%s\\n%s\\n" "$NBCORE_ENV_PATH" "$VIRTUAL_ENV" "$(command -v python)" > "$NBCORE_ENV_PATH/seen.txt"'


def test_install_script_gets_the_environment_folder(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  scripted:\n    install_script: '%s'\n" % SCRIPT.replace("'", "''"))
    result = run_nbcore("install", "scripted", "--backend", "venv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    envs = [e for e in json.loads(run_nbcore("envs", "--json").stdout) if e["name"] == "scripted"]
    assert len(envs) == 1
    path = envs[0]["path"]
    with open(path + "/seen.txt") as seen:
        env_path, virtual_env, python = seen.read().splitlines()
    assert env_path == path
    assert virtual_env == path + "/venv"
    assert python == path + "/venv/bin/python"
