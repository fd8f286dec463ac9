"""The chaos report: the figures every measuring test ``record``\\ed, as one table at the end.

Printed in the terminal summary (so ``make chaos`` shows it with or without ``-s``) and written
to bench/results/chaos-<timestamp>.json (gitignored). Nothing here fails a test: the targets
are judged in the table, the tests assert behaviour. See tests/chaos/figures.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.figures import RECORDS, report_json, table

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"
_OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's outcome, for the table's last column (xfail says the defect is known)."""
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xfail" if report.skipped else "XPASS"
        else:
            outcome = report.outcome
        _OUTCOMES[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RECORDS:
        return
    created = time.strftime("%Y%m%dT%H%M%S")
    terminalreporter.section("chaos figures (issue 14)")
    terminalreporter.write_line(table(RECORDS, _OUTCOMES))
    try:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"chaos-{created}.json"
        path.write_text(json.dumps(report_json(RECORDS, _OUTCOMES, created), indent=2) + "\n")
    except OSError as exc:  # a read-only checkout still gets the table
        terminalreporter.write_line(f"(figures not written: {exc})")
    else:
        terminalreporter.write_line(f"written to {path}")
