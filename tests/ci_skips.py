"""Under CI (the `CI` variable set, as `.ci/run` sets it) a skipped test fails the run.

CI brings up every service the suite can use (PostgreSQL, Redis, Chromium, nginx, make, the
client packages), so a skip there is a test that should have run and did not. Locally a skip stays
a skip, with its reason. tests/conftest.py registers it; `-p tests.ci_skips` loads it elsewhere.
"""

import os

import pytest

PLUGIN_NAME = "taskdesk-ci-skip-refusal"


class SkipRefusal:
    """Collects every skip (a test's, or a whole file's) and turns a passing run into a failing one."""

    def __init__(self) -> None:
        self.skips: list[tuple[str, str]] = []

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):  # an expected failure is no skip
            return
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        self.skips.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)  # pytest.skip(allow_module_level=True) skips a whole file

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # A run whose only file was skipped whole collected nothing (5): it fails as well.
        if self.skips and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.skips:
            return
        terminalreporter.section("CI refuses skipped tests", sep="=", red=True, bold=True)
        for nodeid, reason in self.skips:
            terminalreporter.line(f"SKIPPED IN CI {nodeid}: {reason}", red=True)
        terminalreporter.line(
            f"CI: {len(self.skips)} skipped; CI runs with every service, so a skip fails the run (exit status 1)",
            red=True,
            bold=True,
        )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(SkipRefusal(), PLUGIN_NAME)
