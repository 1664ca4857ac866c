"""Storage faults: PostgreSQL restarting under a running server, SMTP down for a while.

PostgreSQL (PostgreSQL pass only): a private cluster of our own (own data
directory and port; never the shared one on 5432) serves one ``community
serve`` worker. While the cluster is stopped (``pg_ctl stop -m fast``, then
``-m immediate``), reads, posts, sign-ins and registrations must answer within
seconds with a typed ``SERVICE_UNAVAILABLE`` error (no masked "Unexpected
error.", no traceback), ``/readyz`` 503 and ``/healthz`` 200; once the cluster
is back on the same port the same worker (not restarted) serves them again,
and the rows show nothing half-written: every post attempted during the
outage, retried with its client key, is stored exactly once with gap-free
event positions.

SMTP (both passes): while the session server's SMTP server is down, mail
caused by registrations and a password reset is kept in the outbox with
growing attempts and recorded errors; once SMTP is back every message is
delivered exactly once and marked sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from config import load_settings
from models.contacts import OutboxMessage
from resolvers import clock, crypto
from resolvers.mail import backoff
from tests.conftest import BACKEND, REDIS_URL, Server, _redis_reachable, free_port
from tests.helpers import (
    LOGIN,
    PASSWORD,
    REGISTER,
    REQUEST_PASSWORD_RESET,
    RESET_PASSWORD,
    VERIFY_EMAIL,
    Account,
    current_rules_id,
    member,
    register,
    sign_in,
    unique,
)
from tests.smtp import SmtpServer, token_in
from tests.test_discussions import (
    ADD_POST,
    THREAD_PAGE,
    create_area,
    db_id,
    start_thread,
)
from tests.test_two_workers import Worker, run_cli, start_worker, stop_worker

UNAVAILABLE = "SERVICE_UNAVAILABLE"
ANSWER_WITHIN = 5.0  # seconds: a request while the database is down must not hang
RECOVER_WITHIN = 10.0  # seconds: from "cluster accepting connections" to /readyz 200

# ---------------------------------------------------------------- a private PostgreSQL


def postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl (PG_BIN, else the newest /usr/lib/postgresql)."""
    if os.environ.get("PG_BIN"):
        candidates = [Path(os.environ["PG_BIN"])]
    else:
        found = list(Path("/usr/lib/postgresql").glob("*/bin"))
        candidates = sorted(found, key=lambda p: int(p.parent.name), reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of our own that a test may stop and start again.

    Run as root, the cluster belongs to the ``postgres`` user (PostgreSQL
    refuses to run as root); its directory is a fresh one under the system
    temporary folder, which that user can reach.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ctest_pg_"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.running = False

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        log = self.log.read_text() if self.log.exists() else ""
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}\n{log}"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    async def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        await asyncio.to_thread(
            self._run, "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"
        )

    async def start(self) -> None:
        # fsync off is safe here (an immediate stop is not a machine crash: what is
        # written survives in the OS); synchronous_commit stays on, or an answered
        # commit may still sit in PostgreSQL's WAL buffers when ``-m immediate``
        # kills it, and a post the client was told about would be lost.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off"
        )
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        self.running = True

    async def stop(self, mode: str = "fast") -> None:
        await asyncio.to_thread(
            self._run, "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"
        )
        self.running = False

    async def create_databases(self, *names: str) -> None:
        conn = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            for name in names:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def fetch(self, database: str, sql: str, *args: Any) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.url(database), timeout=10)
        try:
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    def destroy(self) -> None:
        """Stop the cluster if it runs and remove its directory (always safe to call)."""
        if self.data.exists():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- the worker on it


@dataclass
class PgCluster:
    pg: PrivatePostgres
    worker: Worker
    srv: Server  # the worker seen through the suite's Server helpers
    admin: str  # admin token
    member: Account
    thread: str


def worker_env(pg: PrivatePostgres, smtp: SmtpServer, tmp: Path, run_id: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMMUNITY_", "BROADCAST_", "SMTP_", "MAIL_", "CONTACTS_"))
    }
    env.update(
        COMMUNITY_ENV="test",
        COMMUNITY_DB_URL=pg.url("community"),
        CONTACTS_DB_URL=pg.url("contacts"),
        BROADCAST_URL=REDIS_URL,
        BROADCAST_CHANNEL_PREFIX=f"{run_id}:",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        MAIL_POLL_SECONDS="0.2",
        MAIL_DIR=str(tmp / "mail"),
        PUBLIC_BASE_URL="https://community.test",
        STAFF_PASSWORD=PASSWORD,
        POSTS_PER_MINUTE="10000",
        POSTS_PER_HOUR="100000",
        REPEAT_POST_MINUTES="0",
        LOG_LEVEL="warning",
    )
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PgCluster]:
    if BACKEND != "postgres":
        pytest.skip("restarts a PostgreSQL cluster: PostgreSQL pass only")
    unavailable = pytest.fail if os.environ.get("CI") else pytest.skip
    bin_dir = postgres_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        unavailable("needs PostgreSQL's initdb and pg_ctl (and runuser when run as root)")
    assert bin_dir is not None
    if not await _redis_reachable():
        unavailable(f"needs Redis at {REDIS_URL}")
    tmp = tmp_path_factory.mktemp("faults_pg")
    run_id = f"cfault_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    pg = PrivatePostgres(bin_dir)
    smtp = SmtpServer()
    worker: Worker | None = None
    try:
        await pg.init()
        await pg.start()
        await pg.create_databases("community", "contacts")
        smtp.start()
        env = worker_env(pg, smtp, tmp, run_id)
        await run_cli(env, "migrate")
        admin_login = "opsfault1"
        await asyncio.gather(
            run_cli(env, "publish-rules"),
            run_cli(
                env, "create-staff", "--role", "admin", "--login", admin_login,
                "--display-name", "Ops",
            ),
        )  # fmt: skip
        worker = await start_worker("pg", env, tmp)
        srv = Server(
            url=f"http://127.0.0.1:{worker.port}",
            ws_url=worker.ws_url,
            settings=load_settings(env),
            smtp=smtp,
            http=worker.http,
        )
        admin_token = await sign_in(srv, admin_login)
        admin = Account(0, "", admin_login, "Ops", None, PASSWORD, admin_token)
        area = await create_area(srv, admin, members_start=True)
        thread, _ = await start_thread(srv, admin, area, title="Restart", body="Aloitus")
        someone = await member(srv)
        yield PgCluster(pg, worker, srv, admin_token, someone, thread)
    finally:
        if worker is not None:
            await stop_worker(worker)
            if worker.process.returncode not in (0, -15):
                print(worker.log.read_text())
        smtp.stop()
        await asyncio.to_thread(pg.destroy)


# ---------------------------------------------------------------- requests and answers


@dataclass
class Answer:
    seconds: float
    status: int
    text: str
    body: dict[str, Any]


async def timed(
    srv: Server, query: str, variables: dict[str, Any], token: str | None = None
) -> Answer:
    """POST on a connection of its own (one request's failure cannot spill into the next)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=20) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
    except httpx.TimeoutException as exc:
        raise AssertionError(f"no answer within 20 s: {query[:60]!r}") from exc
    except httpx.TransportError as exc:  # the connection dropped without an answer
        return Answer(time.monotonic() - started, 0, f"no HTTP answer: {exc!r}", {})
    seconds = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Answer(seconds, response.status_code, response.text, body)


def unavailable_problem(answer: Answer, field: str) -> str | None:
    """None for a clean, typed 'database unavailable' answer given quickly, else what is wrong."""
    what = f"{field}: HTTP {answer.status} after {answer.seconds:.2f} s: {answer.text[:400]}"
    if answer.status != 200:
        return what
    if "Unexpected error" in answer.text or "Traceback" in answer.text or 'File "' in answer.text:
        return what
    if answer.seconds >= ANSWER_WITHIN:
        return f"too slow: {what}"
    errors = answer.body.get("errors")
    if errors:
        if errors[0].get("extensions", {}).get("code") != UNAVAILABLE:
            return what
        # No half answer: the failed field (``field`` or one inside it) is null.
        path = errors[0].get("path") or [field]
        value: Any = answer.body.get("data")
        for step in path:
            value = value[step] if isinstance(value, dict | list) else None
        return None if path[0] == field and value is None else what
    result = (answer.body.get("data") or {}).get(field)  # the typed-union alternative
    return None if isinstance(result, dict) and result.get("code") == UNAVAILABLE else what


def assert_unavailable(answer: Answer, field: str) -> None:
    problem = unavailable_problem(answer, field)
    assert problem is None, problem


class SignedInOutageAnswers(AssertionError):
    """Signed-in requests did not get a clean typed answer while the database was down."""


def add_post_input(thread: str, body: str, key: str) -> dict[str, Any]:
    return {"input": {"threadId": thread, "body": body, "clientKey": key}}


def register_input(rules_id: str, n: str) -> dict[str, Any]:
    return {
        "input": {
            "email": f"outage{n}@example.com",
            "birthDate": "1990-05-17",
            "language": "FI",
            "loginName": f"outage{n}",
            "displayName": f"Katko {n}",
            "password": PASSWORD,
            "rulesVersionId": rules_id,
        }
    }


async def readyz(srv: Server) -> tuple[int, dict[str, Any]]:
    response = await srv.http.get("/readyz", timeout=20)
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll until ``check``; returns the seconds it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


@dataclass
class Burst:
    """Posts written one after another, each with its own client key, until stopped."""

    srv: Server
    token: str
    thread: str
    prefix: str

    def __post_init__(self) -> None:
        self.outcomes: list[tuple[str, str, Answer]] = []  # (key, "ok" | "unavailable" | "bad")
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            key = f"{self.prefix}-{n:04d}"
            answer = await timed(
                self.srv, ADD_POST, add_post_input(self.thread, f"Burst {key}", key), self.token
            )
            result = (answer.body.get("data") or {}).get("addPost") or {}
            if answer.status == 200 and result.get("__typename") == "PostSuccess":
                kind = "ok"
            elif unavailable_problem(answer, "addPost") is None:
                kind = "unavailable"
            else:
                kind = "bad"
            self.outcomes.append((key, kind, answer))
            await asyncio.sleep(0.02)

    def count(self, kind: str) -> int:
        return sum(1 for _, k, _ in self.outcomes if k == kind)


# ---------------------------------------------------------------- PostgreSQL restarted


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restart_gives_typed_errors_then_recovers_without_restart(
    pg_cluster: PgCluster, mode: str
) -> None:
    c = pg_cluster
    srv, token, thread = c.srv, c.member.token, c.thread
    thread_row = db_id(thread)
    rules_id = await current_rules_id(srv)

    async def rows(sql: str, *args: Any) -> list[dict[str, Any]]:
        return await c.pg.fetch("community", sql, *args)

    async def session_count() -> int:
        found = await rows(
            "SELECT COUNT(*) AS n FROM session WHERE member_id = $1", c.member.member_id
        )
        return int(found[0]["n"])

    contacts_before = (await c.pg.fetch("contacts", "SELECT COUNT(*) AS n FROM contact"))[0]["n"]
    sessions_before = await session_count()

    # Up: the member reads and posts.
    before = await timed(
        srv, ADD_POST, add_post_input(thread, f"Before {mode}", f"before-{mode}"), token
    )
    assert before.body["data"]["addPost"]["__typename"] == "PostSuccess", before.text
    assert (await readyz(srv))[0] == 200

    # Posts are being written when the cluster stops.
    burst = Burst(srv, c.admin, thread, f"burst-{mode}")
    posting = asyncio.create_task(burst.run())
    signed_in_problems: list[str] = []
    try:
        try:
            await wait_for(lambda: _true(burst.count("ok") >= 3), 15, "posts before the stop")
            await c.pg.stop(mode)
            stopped_at = len(burst.outcomes)
            await wait_for(
                lambda: _true(
                    sum(1 for _, k, _ in burst.outcomes[stopped_at:] if k != "ok") >= 3
                    or posting.done()
                ),
                15,
                "posts answered while the cluster is down",
            )
        finally:
            burst.stop.set()
            await asyncio.wait_for(posting, 30)
        signed_in_problems += [
            f"burst {key}: {unavailable_problem(a, 'addPost')}"
            for key, kind, a in burst.outcomes
            if kind == "bad"
        ]

        # Down: each kind of request answers at once with a clean typed error.
        during_key = f"during-{mode}"
        for field, query, variables in [
            ("node", THREAD_PAGE, {"id": thread}),
            ("addPost", ADD_POST, add_post_input(thread, f"During {mode}", during_key)),
        ]:
            problem = unavailable_problem(await timed(srv, query, variables, token), field)
            if problem:
                signed_in_problems.append(problem)
        for field, query, variables in [
            ("login", LOGIN, {"login": c.member.login_name, "password": PASSWORD}),
            ("register", REGISTER, register_input(rules_id, mode)),
            ("rules", "{ rules { current { id } } }", {}),
        ]:
            assert_unavailable(await timed(srv, query, variables), field)
        status, ready = await readyz(srv)
        assert status == 503, ready
        assert ready["checks"]["community"] is False, ready
        assert ready["checks"]["contacts"] is False, ready
        health = await srv.http.get("/healthz")
        assert health.status_code == 200, health.text
        assert c.worker.process.poll() is None, c.worker.log.read_text()
    finally:
        if not c.pg.running:
            await c.pg.start()  # the next test needs it, whatever happened here

    # Back on the same port (started above): the same worker recovers within seconds.

    async def ready_again() -> bool:
        return (await readyz(srv))[0] == 200

    took = await wait_for(ready_again, RECOVER_WITHIN, "/readyz 200 after the restart")
    print(f"\n[{mode}] /readyz 200 {took:.2f} s after the cluster accepted connections")

    async def reads_again() -> bool:
        answer = await timed(srv, THREAD_PAGE, {"id": thread}, token)
        return "errors" not in answer.body and answer.body.get("data", {}).get("node") is not None

    await wait_for(reads_again, RECOVER_WITHIN, "the thread page after the restart")
    retried = await timed(
        srv, ADD_POST, add_post_input(thread, f"During {mode}", during_key), token
    )
    assert retried.body["data"]["addPost"]["__typename"] == "PostSuccess", retried.text
    after = await timed(
        srv, ADD_POST, add_post_input(thread, f"After {mode}", f"after-{mode}"), token
    )
    assert after.body["data"]["addPost"]["__typename"] == "PostSuccess", after.text
    after_post = after.body["data"]["addPost"]["post"]
    assert after_post["body"] == f"After {mode}"
    signed_in = await timed(srv, LOGIN, {"login": c.member.login_name, "password": PASSWORD})
    assert signed_in.body["data"]["login"]["__typename"] == "LoginSuccess", signed_in.text
    joined = await timed(srv, REGISTER, register_input(rules_id, mode))
    assert joined.body["data"]["register"]["__typename"] == "RegisterSuccess", joined.text
    # Every burst post, retried with its key, is stored once (a commit the client
    # never heard about returns the stored post instead of a second one).
    for key, _, _ in burst.outcomes:
        again = await timed(srv, ADD_POST, add_post_input(thread, f"Burst {key}", key), c.admin)
        assert again.body["data"]["addPost"]["__typename"] == "PostSuccess", again.text

    # The rows: nothing half-written by the failed attempts.
    posts = await rows(
        "SELECT id, client_key, body FROM post WHERE thread_id = $1 ORDER BY id", thread_row
    )
    keys = Counter(p["client_key"] for p in posts)
    assert [k for k, n in keys.items() if n > 1] == []
    for key, _, _ in burst.outcomes:
        assert keys[key] == 1, key
    for key in (f"before-{mode}", during_key, f"after-{mode}"):
        assert keys[key] == 1, key
    assert {p["body"] for p in posts if p["client_key"] == during_key} == {f"During {mode}"}
    events = await rows(
        "SELECT position, post_id FROM thread_event WHERE thread_id = $1 ORDER BY position",
        thread_row,
    )
    assert [e["position"] for e in events] == list(range(1, len(events) + 1))
    assert sorted(e["post_id"] for e in events) == [p["id"] for p in posts]
    [stored] = await rows("SELECT last_position, post_count FROM thread WHERE id = $1", thread_row)
    assert stored == {"last_position": len(events), "post_count": len(posts)}, stored
    # One registration (the retry after recovery), one member, one contact.
    assert len(await rows("SELECT id FROM member WHERE login_name = $1", f"outage{mode}")) == 1
    contacts_after = (await c.pg.fetch("contacts", "SELECT COUNT(*) AS n FROM contact"))[0]["n"]
    assert contacts_after == contacts_before + 1
    # One session: the sign-in after recovery (the refused one left none).
    assert await session_count() == sessions_before + 1
    assert c.worker.process.poll() is None, c.worker.log.read_text()
    print(
        f"[{mode}] burst: {burst.count('ok')} answered PostSuccess, "
        f"{burst.count('unavailable')} {UNAVAILABLE}, {burst.count('bad')} unclean; "
        f"slowest outage answer {max(a.seconds for _, k, a in burst.outcomes if k != 'ok'):.2f} s"
    )
    # Last, so that everything above is checked whatever the answers were.
    if signed_in_problems:
        raise SignedInOutageAnswers("\n".join(signed_in_problems))


async def _true(value: bool) -> bool:
    return value


# ---------------------------------------------------------------- SMTP down for a while


async def test_mail_caused_while_smtp_is_down_is_delivered_once_when_it_returns(
    server: Server,
) -> None:
    """The session server's own mail worker keeps the mail and delivers it later.

    The in-process worker is the one under test here (nothing is paused), so no
    other worker can take the mail; the test moves ``resolvers.clock`` past each
    backoff instead of waiting 5 s, 10 s and 20 s.
    """
    known = await member(server, language="EN")
    assert known.email is not None
    earlier = set(await OutboxMessage.all().values_list("id", flat=True))
    server.smtp.clear()
    port = server.smtp.port
    newcomers = [f"{unique('smtpdown')}@example.com" for _ in range(4)]

    async def new_rows() -> list[OutboxMessage]:
        return [r for r in await OutboxMessage.all() if r.id not in earlier]

    async def all_attempted(times: int) -> bool:
        found = await new_rows()
        return len(found) >= len(expected) and all(r.attempts >= times for r in found)

    expected = Counter(
        [(address, "verify") for address in newcomers]
        + [(known.email, "already_registered"), (known.email, "reset_password")]
    )
    server.smtp.stop()
    try:
        for address, language in zip(newcomers, ("FI", "SV", "EN", "FI"), strict=True):
            result = await register(server, email=address, language=language)
            assert result["__typename"] == "RegisterSuccess", result
        again = await register(server, email=known.email)  # a known address: a notice
        assert again["__typename"] == "RegisterSuccess", again
        for address in (known.email, f"{unique('nobody')}@example.com"):
            reset = await server.gql(REQUEST_PASSWORD_RESET, {"email": address})
            assert reset["data"]["requestPasswordReset"]["__typename"] == "Done", reset

        # Every message is queued, for the right recipient, and tried once.
        await wait_for(lambda: all_attempted(1), 10, "a first failed attempt of every message")
        rows = await new_rows()
        recipients = Counter(
            (crypto.decrypt(r.recipient_ciphertext, "outbox-recipient"), r.template) for r in rows
        )
        assert recipients == expected
        # Backoff: no tight retry loop while nothing is due.
        await asyncio.sleep(0.8)
        for row in await new_rows():
            assert (row.status, row.attempts) == ("pending", 1), (row.template, row.status)
            assert row.sent_at is None and row.claimed_until is None
            assert row.last_error and "@" not in row.last_error, row.last_error
            assert row.next_attempt_at > clock.now()

        # The outage goes on: each backoff passes and each retry fails too.
        for attempt in (1, 2):
            clock.move(backoff(attempt) + timedelta(seconds=1))
            await wait_for(functools.partial(all_attempted, attempt + 1), 10, f"try {attempt + 1}")
        await asyncio.sleep(0.5)
        rows = await new_rows()
        assert len(rows) == len(expected)  # none lost
        assert {(r.status, r.attempts) for r in rows} == {("pending", 3)}
        assert all(r.last_error for r in rows)
        assert server.smtp.messages == []
    finally:
        server.smtp.start(port)
    assert server.smtp.port == port

    # SMTP is back, but nothing is due before the last backoff has passed.
    await asyncio.sleep(0.6)
    assert server.smtp.messages == []
    clock.move(backoff(3) + timedelta(seconds=1))

    async def all_sent() -> bool:
        return all(r.status == "sent" for r in await new_rows())

    await wait_for(all_sent, 15, "every queued message to be sent")
    await asyncio.sleep(1.0)  # a few more worker cycles: nothing is sent twice
    with server.smtp.lock:
        received = Counter((m["To"], m["X-Community-Template"]) for m in server.smtp.messages)
    assert received == expected
    for row in await new_rows():
        assert row.status == "sent" and row.sent_at is not None, row.template
        assert row.attempts == 3 and row.claimed_until is None, row.template

    # The mail queued during the outage works: its links verify and reset.
    token = token_in(server.smtp.sent_to(newcomers[0], "verify")[0])
    verified = await server.gql(VERIFY_EMAIL, {"token": token})
    assert verified["data"]["verifyEmail"]["__typename"] == "VerifyEmailSuccess", verified
    reset_token = token_in(server.smtp.sent_to(known.email, "reset_password")[0])
    new_password = "a brand new passphrase after the outage"
    reset = await server.gql(
        RESET_PASSWORD, {"input": {"token": reset_token, "newPassword": new_password}}
    )
    assert reset["data"]["resetPassword"]["__typename"] == "Done", reset
    await sign_in(server, known.login_name, new_password)
