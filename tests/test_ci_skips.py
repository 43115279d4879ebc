"""CI allows no skips (tests/ci_skips.py): a skipped test fails the run when CI is set, and only then."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import requires_postgres, requires_redis

ROOT = Path(__file__).resolve().parent.parent

SKIPPING = textwrap.dedent("""
    import pytest

    def test_runs():
        pass

    @pytest.mark.skipif(True, reason="needs nginx (apt-get install nginx-light)")
    def test_needs_nginx():
        pass

    def test_needs_chromium():
        pytest.skip("needs Chromium at /usr/bin/chromium")

    @pytest.mark.xfail(reason="known")
    def test_expected_to_fail():
        assert False
""")


def run_pytest(tmp_path: Path, source: str, ci: str | None) -> subprocess.CompletedProcess:
    """A pytest run of one small file, in its own directory, with the plugin loaded as conftest loads it."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "test_small.py").write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DJANGO_SETTINGS_MODULE", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    args = [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:django", "-p", "no:cacheprovider"]
    return subprocess.run([*args, "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_under_ci_a_skipped_test_fails_the_run_naming_each_skip_and_its_reason(tmp_path):
    run = run_pytest(tmp_path, SKIPPING, ci="true")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "1 passed, 2 skipped, 1 xfailed" in run.stdout  # nothing else failed
    assert "CI refuses skipped tests" in run.stdout
    assert "SKIPPED IN CI test_small.py::test_needs_nginx: needs nginx (apt-get install nginx-light)" in run.stdout
    assert "SKIPPED IN CI test_small.py::test_needs_chromium: needs Chromium at /usr/bin/chromium" in run.stdout
    assert "test_expected_to_fail" not in run.stdout.split("CI refuses skipped tests")[1]  # an xfail is no skip


def test_under_ci_a_file_skipped_whole_fails_the_run(tmp_path):
    source = """
        import pytest

        pytest.skip("needs requirements-clients.txt", allow_module_level=True)
    """
    run = run_pytest(tmp_path, source, ci="1")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "SKIPPED IN CI test_small.py: needs requirements-clients.txt" in run.stdout


def test_under_ci_a_run_without_skips_passes(tmp_path):
    run = run_pytest(tmp_path, "def test_runs():\n    pass\n", ci="true")
    assert run.returncode == pytest.ExitCode.OK, run.stdout + run.stderr
    assert "CI refuses" not in run.stdout


def test_under_ci_a_failing_run_keeps_its_failure(tmp_path):
    run = run_pytest(tmp_path, SKIPPING + "\ndef test_fails():\n    assert False\n", ci="true")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert "SKIPPED IN CI test_small.py::test_needs_nginx" in run.stdout


@pytest.mark.parametrize("ci", [None, ""])
def test_outside_ci_skips_stay_allowed(tmp_path, ci):
    run = run_pytest(tmp_path, SKIPPING, ci=ci)
    assert run.returncode == pytest.ExitCode.OK, run.stdout + run.stderr
    assert "1 passed, 2 skipped, 1 xfailed" in run.stdout and "CI refuses" not in run.stdout


@requires_postgres
@requires_redis
def test_the_suite_under_ci_fails_on_a_skip_of_its_own():
    """tests/conftest.py hands the real suite to the plugin: without make on PATH, tests/test_makefile.py skips."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env.update(CI="true", PATH=str(Path(sys.executable).parent))
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/test_makefile.py"]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "SKIPPED IN CI tests/test_makefile.py::" in run.stdout
    assert "needs make (apt-get install -y make)" in run.stdout
