"""A command on a backend that lacks the feature: one line naming the backend and the feature."""
import pytest

from nbtest import run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")


@pytest.mark.parametrize("command, feature", [
    (["shell", "bare", "--backend", "python", "--", "true"], "nbcore shell"),
    (["shell", "bare", "--backend", "python"], "nbcore shell"),
    (["lock", "bare", "--backend", "python"], "lock"),
    (["push", "bare", "--backend", "python"], "publish"),
])
def test_a_missing_feature_is_one_line(tmp_path, command, feature):
    write(tmp_path / "nbcore.yaml", "environments:\n  bare: {}\n")
    result = run_nbcore(*command, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("nbcore: error: ")]
    assert len(errors) == 1, result.stderr
    assert "python backend" in errors[0] and feature in errors[0], result.stderr
