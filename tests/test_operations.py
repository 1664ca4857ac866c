"""Operations: metrics, request ids, logs, persisted documents, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import build_schema, parse, validate
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from ops.logs import JsonFormatter, RequestIdFilter, TextFormatter
from schema.documents import BUNDLED, DocumentStore, document_id
from tests.conftest import Server, start_server
from tests.helpers import member, staff
from tests.test_discussions import ADD_POST, ckey, create_area, db_id, posted, start_thread
from tests.ws import WsClient

pytestmark = pytest.mark.usefixtures("clean")

ROOT = Path(__file__).resolve().parent.parent
TRANSPORT = Subprotocol("graphql-transport-ws")
COMMUNITY = str(ROOT / ".venv" / "bin" / "community")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        series, _, label_text = sample.partition("{")
        if series != name:
            continue
        found = ",".join(sorted(p for p in label_text.rstrip("}").split(",") if p))
        if found == wanted:
            return float(value)
    return 0.0


async def scrape(server: Server) -> str:
    response = await server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


# ---------------------------------------------------------------- metrics


async def test_metrics_count_requests_errors_and_published_events(server: Server) -> None:
    before = await scrape(server)
    author = await member(server)
    area = await create_area(server, await staff(server, "admin"))
    thread, _ = await start_thread(server, author, area)
    await server.http.post("/graphql", json={"query": "{ nope }"})
    await posted(server, author, thread, "Mittarit kuntoon.")
    after = await scrape(server)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("community_http_requests_total", route="/graphql", method="POST", status="200") >= 4
    assert grew("community_graphql_errors_total", code="GRAPHQL_ERROR") >= 1
    assert grew("community_graphql_operations_total", type="mutation") >= 3
    assert grew("community_bus_events_published_total") >= 1
    assert metric(after, "community_http_request_seconds_count", route="/graphql") > 0
    assert 'community_outbox_backlog{state="pending"}' in after
    assert metric(after, "community_bus_ready") == 1


async def test_metrics_follow_websockets_and_subscriptions(server: Server) -> None:
    viewer = await member(server)
    area = await create_area(server, await staff(server, "admin"))
    thread, _ = await start_thread(server, viewer, area)
    base = await scrape(server)
    async with connect(server.ws_url, subprotocols=[TRANSPORT]) as raw:
        ws = WsClient(raw)
        await ws.send({"type": "connection_init", "payload": {"token": viewer.token}})
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe(
            "events",
            "subscription($t: ID!) { threadEvents(threadId: $t) { position } }",
            {"t": thread},
        )
        await asyncio.sleep(0.3)
        during = await scrape(server)
        await posted(server, viewer, thread, "Hei.")
        assert (await ws.next_data("events", "threadEvents"))["position"] >= 1
        delivered = await scrape(server)
    await asyncio.sleep(0.3)
    end = await scrape(server)
    open_ = "community_websockets_open"
    active = "community_subscriptions_active"
    assert metric(during, open_) == metric(base, open_) + 1
    assert metric(during, active) == metric(base, active) + 1
    assert metric(end, open_) == metric(base, open_)
    assert metric(end, active) == metric(base, active)
    assert metric(delivered, "community_events_delivered_total") > metric(
        during, "community_events_delivered_total"
    )


async def test_metrics_token_is_required_when_set(server: Server) -> None:
    guarded = replace(server.settings, metrics_token="s3cret-scrape")
    from config import override_settings

    override_settings(guarded)
    try:
        assert (await server.http.get("/metrics")).status_code == 401
        ok = await server.http.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
        assert ok.status_code == 200
    finally:
        override_settings(server.settings)


# ---------------------------------------------------------------- request ids and logs


async def test_every_response_has_a_request_id_and_a_safe_one_is_echoed(server: Server) -> None:
    first = await server.http.get("/healthz")
    second = await server.http.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = await server.http.get("/healthz", headers={"X-Request-ID": "app-42.a_b"})
    assert echoed.headers["x-request-id"] == "app-42.a_b"
    unsafe = await server.http.get("/healthz", headers={"X-Request-ID": 'x" onload=alert(1)'})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])


def _record(message: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    record = logging.LogRecord(
        "community.test", logging.WARNING, __file__, 1, message, args,
        (type(exc), exc, exc.__traceback__) if exc else None,
    )  # fmt: skip
    RequestIdFilter().filter(record)
    return record


def test_json_log_lines_carry_request_id_and_no_personal_data() -> None:
    from ops.logs import REQUEST_ID

    token = REQUEST_ID.set("req-123")
    try:
        try:
            raise ValueError("duplicate key (email)=(liisa.virtanen@example.fi) 131052-308T")
        except ValueError as error:
            record = _record("mail to %s failed", "matti.meikalainen@example.com", exc=error)
        line = JsonFormatter().format(record)
        text = TextFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req-123"
    assert entry["level"] == "WARNING" and entry["logger"] == "community.test"
    assert entry["message"] == "mail to [email] failed"
    assert "[email]" in entry["exception"] and "[id-code]" in entry["exception"]
    for output in (line, text):
        assert "@example" not in output and "131052-308T" not in output
    assert "[req-123]" in text


# ---------------------------------------------------------------- persisted documents


def test_every_bundled_document_is_valid_against_the_schema() -> None:
    schema = build_schema((ROOT / "schema.graphql").read_text())
    store = DocumentStore()
    assert len(store.documents) >= 20
    for key, text in store.documents.items():
        assert key == document_id(text)
        errors = validate(schema, parse(text))
        assert not errors, (store.names[key], errors)


async def test_a_document_id_runs_the_registered_document(server: Server) -> None:
    rules = (BUNDLED / "Rules.graphql").read_text()
    key = document_id(rules)
    by_id = await server.http.post("/graphql", json={"documentId": key, "variables": {"first": 5}})
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["data"]["rules"]["current"] is not None
    apollo = await server.http.post(
        "/graphql",
        json={
            "variables": {"first": 5},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": key.split(":")[1]}},
        },
    )
    assert apollo.json() == by_id.json()
    unknown = await server.http.post("/graphql", json={"documentId": "sha256:" + "0" * 64})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_DOCUMENT_NOT_FOUND"


@pytest.fixture
async def trusted(server: Server) -> Any:
    settings = replace(server.settings, trusted_documents_only=True)
    uv, task, port = await start_server(settings, attach=True)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http, f"ws://127.0.0.1:{port}/graphql"
    uv.should_exit = True
    await task


async def test_trusted_mode_runs_only_registered_documents_for_non_staff(
    server: Server, trusted: Any
) -> None:
    http, ws_url = trusted
    someone = await member(server)
    admin = await staff(server, "admin")
    me = (BUNDLED / "Me.graphql").read_text()
    text = {"query": "{ me { id } }"}
    anonymous = await http.post("/graphql", json=text)
    assert anonymous.status_code == 400
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "PERSISTED_DOCUMENT_REQUIRED"
    as_member = await http.post(
        "/graphql", json=text, headers={"Authorization": f"Bearer {someone.token}"}
    )
    assert as_member.json()["errors"][0]["extensions"]["code"] == "PERSISTED_DOCUMENT_REQUIRED"
    by_id = await http.post(
        "/graphql",
        json={"documentId": document_id(me)},
        headers={"Authorization": f"Bearer {someone.token}"},
    )
    assert by_id.json()["data"]["me"]["displayName"] == someone.display_name
    as_admin = await http.post(
        "/graphql", json=text, headers={"Authorization": f"Bearer {admin.token}"}
    )
    assert as_admin.status_code == 200 and as_admin.json()["data"]["me"]["id"]

    async with connect(ws_url, subprotocols=[TRANSPORT]) as raw:
        ws = WsClient(raw)
        await ws.send({"type": "connection_init", "payload": {"token": someone.token}})
        assert (await ws.receive())["type"] == "connection_ack"
        await ws.subscribe("text", "{ me { id } }", {})
        refused = await ws.receive()
        assert refused["type"] == "error" and refused["id"] == "text"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_DOCUMENT_REQUIRED"
        await ws.send(
            {"type": "subscribe", "id": "doc", "payload": {"documentId": document_id(me)}}
        )
        answer = await ws.receive()
        assert answer["type"] == "next", answer
        assert answer["payload"]["data"]["me"]["displayName"] == someone.display_name


# ---------------------------------------------------------------- graceful shutdown


def _worker_env(server: Server) -> dict[str, str]:
    settings = server.settings
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMMUNITY_", "BROADCAST_", "SMTP_", "MAIL_", "CONTACTS_"))
    }
    env.update(
        COMMUNITY_ENV="test",
        COMMUNITY_DB_URL=settings.community_db_url,
        CONTACTS_DB_URL=settings.contacts_db_url,
        BROADCAST_URL=settings.broadcast_url,
        BROADCAST_CHANNEL_PREFIX=settings.channel_prefix,
        MAIL_WORKER="false",
        MAIL_DIR=settings.mail_dir,
        PUBLIC_BASE_URL=settings.public_base_url,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        NEW_MEMBER_LINK_POSTS="0",
        REPEAT_POST_MINUTES="0",
    )
    return env


async def test_sigterm_closes_websockets_with_1001_and_finishes_writes(
    server: Server, tmp_path: Path
) -> None:
    from tests.conftest import free_port

    author = await member(server)
    area = await create_area(server, await staff(server, "admin"))
    thread, _ = await start_thread(server, author, area)
    # Six writers, two posts each: within every member's posting rate.
    writers = [await member(server) for _ in range(6)]
    port = free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [COMMUNITY, "serve", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)],
            env=_worker_env(server),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log_path.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.05)
            raw = await connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=[TRANSPORT])
            ws = WsClient(raw)
            await ws.send({"type": "connection_init", "payload": {"token": author.token}})
            assert (await ws.receive())["type"] == "connection_ack"
            await ws.subscribe(
                "events",
                "subscription($t: ID!) { threadEvents(threadId: $t) { position } }",
                {"t": thread},
            )

            async def post(n: int) -> httpx.Response | None:
                try:
                    return await http.post(
                        "/graphql",
                        json={
                            "query": ADD_POST,
                            "variables": {
                                "input": {
                                    "threadId": thread,
                                    "body": f"Viesti numero {n} ennen sammutusta.",
                                    "clientKey": ckey(),
                                }
                            },
                        },
                        headers={"Authorization": f"Bearer {writers[n % 6].token}"},
                    )
                except httpx.TransportError:
                    return None  # not accepted: the listener was already closed

            writes = [asyncio.create_task(post(n)) for n in range(12)]
            await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*writes)
            closed_with = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    while True:
                        await raw.recv()
            closed_with = raw.close_code
            # uvicorn re-raises the SIGTERM once it has shut down: -15 is a clean exit.
            code = await asyncio.to_thread(process.wait, 40)
            assert code in (0, -signal.SIGTERM), log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert closed_with == 1001, (closed_with, log_path.read_text())
    succeeded = [a for a in answers if a is not None]
    assert succeeded, "no write was in flight when the signal came"
    for answer in succeeded:
        # Every request the server took was answered in full, not cut off.
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["addPost"]["__typename"] == "PostSuccess", answer.text
    from models.discussions import Post

    stored = await Post.filter(thread_id=db_id(thread)).count()
    assert stored == len(succeeded) + 1  # the thread's opening post, and each answered write
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines and all("request_id" in line for line in lines)
    assert any("closed 1 websockets" in line["message"] for line in lines), lines
    shutdown_log = "\n".join(
        f"{line['time']} {line['level']} {line['logger']}: {line['message']}" for line in lines
    )
    assert not [line for line in lines if line["level"] == "ERROR"], shutdown_log


async def test_a_client_leaving_mid_body_is_not_an_error(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    caplog.set_level(logging.INFO)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"query":'
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    assert (await server.http.get("/healthz")).status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_server_code_waits_with_asyncio_timeout_not_wait_for() -> None:
    """Python 3.11's ``asyncio.wait_for`` can swallow a cancellation.

    When the cancellation lands just as the awaited call completes, wait_for
    returns its result instead, and a loop around it never ends: a stopped
    stream lived on and held the worker's shutdown (see
    test_streams_stopped_while_events_arrive_all_end). The server waits with
    ``asyncio.timeout`` instead, which does not.
    """
    offenders = []
    for path in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("*/**/*.py")):
        if path.parts[len(ROOT.parts)] in {".venv", "tests", "bench", "migrations"}:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "wait_for(" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders


async def test_shutdown_names_the_tasks_that_do_not_end(caplog: pytest.LogCaptureFixture) -> None:
    from ops.shutdown import report_stragglers

    async def stuck_stream() -> None:
        await asyncio.Event().wait()

    stuck = asyncio.create_task(stuck_stream())
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.WARNING, logger="community.shutdown"):
            await report_stragglers(0)
    finally:
        stuck.cancel()
    reports = [r.getMessage() for r in caplog.records if r.name == "community.shutdown"]
    assert any("still running after 0 s" in r and "stuck_stream" in r for r in reports), reports
