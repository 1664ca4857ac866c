"""Community rules: the current version, the history, acceptance and publishing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry import relay

from models import community as m
from resolvers import rules
from resolvers.errors import Code, UserError
from schema.context import Info
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.pagination import Connection, db_id, nodes_in_order, paginate
from schema.permissions import IsAdmin, IsAuthenticated


@strawberry.type(description="One published version of the community rules.")
class RulesVersion(relay.Node):
    id: relay.NodeID[int]
    version: int
    text_fi: str
    text_sv: str
    text_en: str
    published_at: datetime

    @strawberry.field(description="The text in the caller's language.")
    def text(self, info: Info) -> str:
        return {"fi": self.text_fi, "sv": self.text_sv}.get(info.context.language, self.text_en)

    @classmethod
    def from_row(cls, row: m.RulesVersion) -> RulesVersion:
        return cls(
            id=row.id,
            version=row.version,
            text_fi=row.text_fi,
            text_sv=row.text_sv,
            text_en=row.text_en,
            published_at=row.published_at,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[RulesVersion | None]:
        # The rules are public: anyone may read them before joining.
        return await nodes_in_order(m.RulesVersion.all(), node_ids, cls.from_row)


@strawberry.type(description="The rules in force and their history.")
class Rules:
    @strawberry.field(description="The version in force, or null before the first is published.")
    async def current(self) -> RulesVersion | None:
        row = await rules.current_rules()
        return RulesVersion.from_row(row) if row else None

    @strawberry.field(description="Every published version, newest first.")
    async def history(self, first: int = 20, after: str | None = None) -> Connection[RulesVersion]:
        return await paginate(m.RulesVersion.all(), first, after, RulesVersion.from_row)


@strawberry.type
class AcceptRulesSuccess:
    rules: RulesVersion


@strawberry.input
class PublishRulesInput:
    text_fi: str
    text_sv: str
    text_en: str


@strawberry.type
class PublishRulesSuccess:
    rules: RulesVersion


Failure = InputError | NotAllowedError | RateLimitedError
AcceptRulesResult = Annotated[AcceptRulesSuccess | Failure, strawberry.union("AcceptRulesResult")]
PublishRulesResult = Annotated[
    PublishRulesSuccess | Failure, strawberry.union("PublishRulesResult")
]


@strawberry.type
class RulesQuery:
    @strawberry.field(description="The community rules (public).")
    def rules(self) -> Rules:
        return Rules()


@strawberry.type
class RulesMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Accept a rules version; it must be the current one.",
    )
    async def accept_rules(self, info: Info, version_id: relay.GlobalID) -> AcceptRulesResult:
        member = info.context.member
        assert member is not None
        try:
            version = db_id(version_id.node_id)
            if version_id.type_name != "RulesVersion" or version is None:
                raise UserError(Code.RULES_NOT_CURRENT, field="versionId")
            acceptance = await rules.do_accept_rules(member, version)
        except UserError as exc:
            return failure(exc, info)
        row = await m.RulesVersion.get(id=acceptance.rules_id)  # type: ignore[attr-defined]
        return AcceptRulesSuccess(rules=RulesVersion.from_row(row))

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Publish a new rules version (admins). Members are notified in-app.",
    )
    async def publish_rules(self, info: Info, input: PublishRulesInput) -> PublishRulesResult:
        try:
            row = await rules.do_publish_rules(
                info.context.member, input.text_fi, input.text_sv, input.text_en
            )
        except UserError as exc:
            return failure(exc, info)
        return PublishRulesSuccess(rules=RulesVersion.from_row(row))
