"""NBCORE_SKIP_ENGINES=docker,... skips the engine tests with that reason, even where the engine runs."""
import subprocess
import sys

from nbtest import REPO_ROOT, clean_environ


def run_pytest(*args, **variables):
    env = clean_environ()
    env.pop("NBCORE_REQUIRE_ENGINES", None)
    env.pop("NBCORE_SKIP_ENGINES", None)
    env.update(variables)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"] + list(args),
                          cwd=str(REPO_ROOT), env=env, capture_output=True, text=True, timeout=300)


def test_skipped_engines_skip_their_tests_with_the_reason():
    result = run_pytest("-m", "docker or registry", "tests/docker/test_docker_engine.py", "tests/registry",
                        NBCORE_SKIP_ENGINES="docker,ray")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" not in result.stdout.splitlines()[-1] and "skipped" in result.stdout.splitlines()[-1]
    assert "docker tests skipped: NBCORE_SKIP_ENGINES=docker,ray" in result.stdout


def test_an_engine_both_required_and_skipped_is_a_usage_error():
    result = run_pytest("tests/test_skip_engines.py", "-k", "nothing", NBCORE_SKIP_ENGINES="docker",
                        NBCORE_REQUIRE_ENGINES="docker")
    assert result.returncode == 4
    assert "docker is both required (NBCORE_REQUIRE_ENGINES) and skipped (NBCORE_SKIP_ENGINES)" in result.stderr
