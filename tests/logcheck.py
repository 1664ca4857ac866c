"""Pytest plugin: the session fails when a log line holds personal data.

Every log record made during the session, at every level down to DEBUG and from
every logger, is formatted (message and exception text) and scanned for email
addresses and valid Finnish personal identity codes; so is every ``*.log`` file
under pytest's basetemp when the session ends (the server processes of
tests/test_two_workers.py and other subprocess tests write their logs there).
A finding sets the exit status to TESTS_FAILED and each offending line is printed
with its logger name (or its file).

Capture. A handler on the root logger would miss most of what the app could log:
records below a logger's level are never made (uvicorn's loggers are set to WARNING
by the test server, the root logger is at WARNING), uvicorn's loggers do not
propagate to the root, and a ``dictConfig`` made by the app would remove a root
handler. So while the session runs, ``Logger.isEnabledFor`` answers True (every
record is made) and ``Logger.handle`` hands every record to the capture handler
first, then passes on only the records the loggers' real levels let through, to
the handlers that would have had them anyway: pytest's log capture (``caplog``,
the "Captured log" sections) and the app's own handlers see exactly what they saw
without this plugin.

What counts (decided here, tested in tests/test_leaks.py):

- an email address is ``local@domain.tld`` whose last label is at least two
  letters: ``user@localhost`` and ``postgres@127.0.0.1`` (service accounts in DSNs)
  are not matched, any address on a real-looking domain is, ``example.com`` test
  addresses included (those are exactly the members' addresses the tests use);
- a personal identity code is ``DDMMYY``, a century sign, three digits and a check
  character that python-stdnum validates (temporary codes, 900-999, included); a
  code with a wrong check character or an impossible date is not one.

Nothing else is allowed; the loggers in ``IGNORED_LOGGERS`` are the tests' own
infrastructure, never the app's (community.*, tortoise, uvicorn, asyncpg are
always scanned). Each finding names the tests during which it was logged. A finding
logged only during tests that ended as an expected failure (``xfail``: a known app
bug the test pins, such as a display name that is an identity code being stored) is
printed as known and does not fail the session by itself; once the bug is fixed the
strict xfail passes, fails the run, and its mark comes off.

Register with ``pytest_plugins = ["tests.logcheck"]`` in conftest.py, or run
pytest with ``-p tests.logcheck``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from stdnum.fi import hetu

# The tests' own infrastructure, matched by name and their children. Never add the
# app's loggers (community.*, tortoise*, uvicorn*, asyncpg, aiosqlite, broadcaster).
IGNORED_LOGGERS = (
    # aiosmtpd, the test SMTP server (tests/smtp.py): logs every envelope's
    # MAIL FROM / RCPT TO, i.e. the addresses the app sends mail to, by design.
    "mail.log",
    "mail.debug",
    # The tests' websocket clients (websockets library, client side): log the frames
    # they receive at DEBUG, i.e. answers meant for that client (an admin's
    # readMemberContact, a member's myData). The server side logs as uvicorn.error.
    "websockets.client",
)

EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])")
HETU_SHAPE = re.compile(r"(?<![0-9A-Za-z])\d{6}[-+A-FU-Ya-fu-y]\d{3}[0-9A-Za-z](?![0-9A-Za-z])")
FORMAT = "%(name)s %(levelname)s %(message)s"
MAX_REPORTED = 50  # distinct offending lines printed (all are counted)
_DOMAIN = re.compile(r"(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])")


def _emails(text: str) -> Iterator[tuple[int, str]]:
    """What ``EMAIL.finditer`` finds, from each "@" outwards (the regex alone tries every
    position of every line and costs ~0.3 us a character; most records have no "@")."""
    at = text.find("@")
    while at != -1:
        domain = _DOMAIN.match(text, at + 1)
        start = at
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.%+-"):
            start -= 1
        if domain is not None and start < at:
            yield start, text[start : domain.end()]
        at = text.find("@", at + 1)


def scan(text: str) -> list[str]:
    """The personal data in ``text``: email addresses and valid identity codes, in order."""
    found = list(_emails(text))
    for match in HETU_SHAPE.finditer(text):
        if hetu.is_valid(match.group(0).upper(), allow_temporary=True):
            found.append((match.start(), match.group(0)))
    return [value for _, value in sorted(found)]


def ignored(logger_name: str) -> bool:
    return any(logger_name == n or logger_name.startswith(n + ".") for n in IGNORED_LOGGERS)


def never_written(record: logging.LogRecord) -> bool:
    """Records the server never writes, whatever LOG_LEVEL says: the DEBUG lines of the
    libraries ``ops.logs.configure`` pins at INFO (SQL parameters, frames), and
    uvicorn's TRACE frame dumps (below DEBUG, the lowest LOG_LEVEL)."""
    from ops.logs import QUIET_DEBUG

    name = record.name
    if record.levelno < logging.INFO and any(
        name == n or name.startswith(n + ".") for n in QUIET_DEBUG
    ):
        return True
    return record.levelno < logging.DEBUG


@dataclass
class Finding:
    source: str  # logger name, or a log file's path
    line: str
    values: list[str]
    count: int = 1
    tests: set[str] = field(default_factory=set)  # node ids ("" outside any test)


CURRENT_TEST = ""  # the node id of the test running now


class Capture(logging.Handler):
    """Formats every record handed to it and keeps the lines that hold personal data.

    Scanning as records arrive keeps memory flat over a long session; the findings are
    reported (and fail the session) when it ends.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))
        self.findings: dict[tuple[str, str], Finding] = {}
        self.records = 0
        self.unformattable: list[str] = []
        self._scan_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if ignored(record.name) or never_written(record):
            return
        try:
            text = self.format(record)
        except Exception as exc:  # a broken argument must not break the code that logs
            with self._scan_lock:
                self.unformattable.append(f"{record.name}: {record.msg!r} ({exc!r})")
            return
        with self._scan_lock:
            self.records += 1
        self.scan_text(record.name, text)

    def scan_text(self, source: str, text: str) -> None:
        for line in text.splitlines():
            values = scan(line)
            if not values:
                continue
            with self._scan_lock:
                key = (source, line)
                if key in self.findings:
                    self.findings[key].count += 1
                else:
                    self.findings[key] = Finding(source, line, values)
                self.findings[key].tests.add(CURRENT_TEST)


CAPTURE: Capture | None = None
_real_is_enabled_for = logging.Logger.isEnabledFor
_real_handle = logging.Logger.handle


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    return True


def _handle(self: logging.Logger, record: logging.LogRecord) -> None:
    capture = CAPTURE
    if capture is not None:
        capture.handle(record)
    # What the logger's real level lets through goes on as it would have without us.
    if _real_is_enabled_for(self, record.levelno):
        _real_handle(self, record)


def install() -> Capture:
    """Start capturing every record (idempotent)."""
    global CAPTURE
    if CAPTURE is None:
        CAPTURE = Capture()
        logging.Logger.isEnabledFor = _is_enabled_for  # type: ignore[method-assign]
        logging.Logger.handle = _handle  # type: ignore[method-assign]
    return CAPTURE


def uninstall() -> None:
    global CAPTURE
    logging.Logger.isEnabledFor = _real_is_enabled_for  # type: ignore[method-assign]
    logging.Logger.handle = _real_handle  # type: ignore[method-assign]
    CAPTURE = None


def log_files(config: pytest.Config) -> Iterator[Path]:
    """The ``*.log`` files under this session's basetemp (none if it was never made)."""
    factory: Any = getattr(config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return
    basetemp = Path(factory.getbasetemp())
    yield from sorted(p for p in basetemp.rglob("*.log") if p.is_file())


# ---------------------------------------------------------------------- hooks

XFAILED: set[str] = set()  # node ids of the tests that ended as expected failures


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global CURRENT_TEST
    CURRENT_TEST = item.nodeid
    try:
        return (yield)
    finally:
        CURRENT_TEST = ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if hasattr(report, "wasxfail") and report.skipped:
        XFAILED.add(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # trylast: after the session-scoped fixtures (the server) are torn down, so the
    # shutdown's records are scanned too.
    capture = CAPTURE
    if capture is None:
        return
    uninstall()
    files = list(log_files(session.config))
    for path in files:
        capture.scan_text(str(path), path.read_text(encoding="utf-8", errors="replace"))
    all_findings = list(capture.findings.values())
    known = [f for f in all_findings if f.tests and f.tests <= XFAILED]
    findings = [f for f in all_findings if f not in known]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str, **markup: bool) -> None:
        if reporter is not None:
            reporter.write_line(line, **markup)
        else:
            print(line)

    if capture.unformattable:
        write(f"logcheck: {len(capture.unformattable)} record(s) could not be formatted:")
        for entry in capture.unformattable[:10]:
            write(f"  {entry}")
    if not all_findings:
        if reporter is not None:
            reporter.ensure_newline()
        write(
            f"logcheck: no personal data in {capture.records} log records, {len(files)} log files"
        )
        return
    if reporter is not None:
        reporter.ensure_newline()
        title = "personal data in logs" if findings else "personal data in logs (known bugs)"
        reporter.write_sep("=", title, red=bool(findings), yellow=not findings, bold=True)
    for group, heading, markup in (
        (findings, "hold personal data", {"red": True}),
        (known, "hold personal data, logged only during xfailed tests (known bugs)", {}),
    ):
        if not group:
            continue
        total = sum(f.count for f in group)
        write(
            f"{total} log line(s) {heading} ({len(group)} distinct; {capture.records} "
            f"records and {len(files)} log file(s) scanned):",
            **markup,
        )
        for finding in group[:MAX_REPORTED]:
            times = f" (x{finding.count})" if finding.count > 1 else ""
            write(f"  [{finding.source}]{times} {finding.line}")
            write(f"      found: {', '.join(finding.values)}")
            tests = sorted(t or "(outside any test)" for t in finding.tests)
            write(f"      during: {', '.join(tests[:3])}{' ...' if len(tests) > 3 else ''}")
        if len(group) > MAX_REPORTED:
            write(f"  ... and {len(group) - MAX_REPORTED} more distinct line(s)")
    if findings and session.exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.NO_TESTS_COLLECTED,
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    if CAPTURE is not None:
        uninstall()
