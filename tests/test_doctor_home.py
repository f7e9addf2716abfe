"""``nbcore doctor`` names the variable that moved the cache folder."""
import json

import pytest

from nbtest import run_nbcore

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize("variables, set_by", [
    ({"NBCORE_HOME": "{tmp}/a"}, "NBCORE_HOME"),
    ({"NBCORE_HOME": "", "NERFBASELINES_PREFIX": "{tmp}/b"}, "NERFBASELINES_PREFIX"),
    ({"NBCORE_HOME": "{tmp}/a", "NERFBASELINES_PREFIX": "{tmp}/b"}, "NBCORE_HOME"),
], ids=["nbcore-home", "nerfbaselines-prefix", "both"])
def test_doctor_names_the_variable_that_set_the_cache(tmp_path, variables, set_by):
    variables = {name: value.format(tmp=tmp_path) for name, value in variables.items()}
    result = run_nbcore("doctor", "--json", cwd=tmp_path, env=variables)
    assert result.returncode == 0, result.stderr
    home = json.loads(result.stdout)["home"]
    assert home["set_by"] == set_by
    assert home["path"] == variables[set_by]
    result = run_nbcore("doctor", cwd=tmp_path, env=variables)
    assert "cache: %s (%s;" % (variables[set_by], set_by) in result.stdout


def test_doctor_says_default_without_either_variable(tmp_path):
    result = run_nbcore("doctor", "--json", cwd=tmp_path, env={"NBCORE_HOME": "", "NERFBASELINES_PREFIX": ""})
    assert json.loads(result.stdout)["home"]["set_by"] == "default"
