"""End-to-end: register, verify by email, sign in, read `me`."""

from __future__ import annotations

from models.community import Member, MemberStatus
from tests.conftest import Server
from tests.helpers import ME, member


async def test_register_verify_login_me(server: Server) -> None:
    account = await member(server, displayName="Kahvikuppi")
    body = await server.gql(ME, token=account.token)
    assert body["data"]["me"]["displayName"] == "Kahvikuppi"
    assert body["data"]["me"]["mustAcceptRules"] is False
    row = await Member.get(id=account.member_id)
    assert row.status == MemberStatus.ACTIVE


async def test_healthz_and_readyz(server: Server) -> None:
    assert (await server.http.get("/healthz")).json() == {"status": "ok"}
    ready = await server.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"community": True, "contacts": True, "bus": True}
