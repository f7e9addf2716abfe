"""The command line's rough edges: one line and a clear exit code instead of a traceback, strict JSON."""
import json
import os
import subprocess
import sys

import pytest

from nbtest import clean_environ, run_nbcore, write

pytestmark = pytest.mark.usefixtures("clean_env", "nbcore_home")

MOD = '''
def odd_result():
    return {(1, 2): float("nan"), "inf": float("inf"), 3: [float("-inf"), 1.5], None: b"\\x01", True: {("a",): 1}}


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def noisy():
    import os, sys
    print("printed by the function")
    sys.stdout.flush()
    os.system("echo written by a child process")
    return 7
'''


@pytest.fixture
def project(tmp_path):
    write(tmp_path / "nbcore.yaml", "environments:\n  bare: {}\n")
    write(tmp_path / "mod.py", MOD)
    return tmp_path


def _reject_constant(name):
    raise ValueError("not strict JSON: %s" % name)


def strict_json(text):
    """Parse ``text`` as a strict parser would: NaN and Infinity are errors."""
    return json.loads(text, parse_constant=_reject_constant)


def one_line_error(result, code, needle):
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbcore: error: ") and needle in lines[0], result.stderr


@pytest.fixture
def installed(project):
    result = run_nbcore("install", "bare", "--backend", "venv", cwd=project)
    assert result.returncode == 0, result.stderr
    return project


def test_shell_missing_command_answers_127_in_one_line(installed):
    project = installed
    result = run_nbcore("shell", "bare", "--backend", "venv", "--", "no-such-cmd", "x", cwd=project)
    one_line_error(result, 127, "no-such-cmd: command not found in bare")


def test_shell_command_that_cannot_execute_answers_126_in_one_line(installed):
    project = installed
    write(project / "not-executable", "echo hi\n")
    os.chmod(str(project / "not-executable"), 0o644)
    result = run_nbcore("shell", "bare", "--backend", "venv", "--", "./not-executable", cwd=project)
    one_line_error(result, 126, "./not-executable: permission denied in bare")


def test_json_has_string_keys_and_no_nan_or_infinity(project):
    result = run_nbcore("call", "bare", "mod:odd_result", "--backend", "python", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    data = strict_json(result.stdout)["result"]
    assert data == {"[1, 2]": None, "inf": None, "3": [None, 1.5], "null": "01", "true": {'["a"]': 1}}


def test_json_stdout_holds_the_document_alone(project):
    """Whatever else writes to standard output during the command (here an in-process function and its child)
    reaches stderr."""
    result = run_nbcore("call", "bare", "mod:noisy", "--backend", "python", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    assert strict_json(result.stdout)["result"] == 7
    assert "printed by the function" in result.stderr and "written by a child process" in result.stderr


def test_json_ready_converts_numpy_values():
    np = pytest.importorskip("numpy")
    from nbcore.cli.main import _json_ready

    value = {"a": np.array([1.0, np.nan]), "b": np.float32("inf"), "c": np.int64(3)}
    assert strict_json(json.dumps(_json_ready(value), allow_nan=False)) == {"a": [1.0, None], "b": None, "c": 3}


def test_reader_gone_ends_quietly():
    """``nbcore plugins --json | head -0``: no traceback, the SIGPIPE exit code, nothing at exit either."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        result = subprocess.run([sys.executable, "-m", "nbcore", "plugins", "--json"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, env=clean_environ(), timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert result.stderr == ""


def test_args_from_a_file_and_kwargs_from_stdin(project):
    args_file = write(project / "args.json", json.dumps([list(range(50000))]))
    result = subprocess.run([sys.executable, "-m", "nbcore", "call", "bare", "mod:echo", "--backend", "python", "--json",
                             "--args", "@" + str(args_file), "--kwargs", "-"], input='{"k": "v"}', cwd=str(project),
                            capture_output=True, text=True, env=clean_environ(), timeout=120)
    assert result.returncode == 0, result.stderr
    data = strict_json(result.stdout)["result"]
    assert data == {"args": [list(range(50000))], "kwargs": {"k": "v"}}


@pytest.mark.parametrize("args, needle", [
    (["--args", "@missing.json"], "--args @missing.json: cannot read missing.json: No such file or directory"),
    (["--args", "-", "--kwargs", "-"], "--args and --kwargs cannot both read standard input"),
    (["--kwargs", "@list.json"], "--kwargs a JSON object"),
    (["--args", "@bad.json"], "--args is not valid JSON"),
])
def test_bad_argument_files_are_one_line(project, args, needle):
    write(project / "bad.json", "[1,")
    write(project / "list.json", "[1]")
    result = run_nbcore("call", "bare", "mod:echo", "--backend", "python", *args, cwd=project)
    one_line_error(result, 2, needle)
