"""Members: public profiles, the signed-in account, sessions and account mutations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay

from models import community as m
from resolvers import accounts, clock, rules, sessions
from resolvers.errors import UserError
from schema.context import Info
from schema.errors import InputError, NotAllowedError, RateLimitedError, failure
from schema.pagination import Connection, db_id, nodes_in_order, paginate, require_id
from schema.permissions import IsAuthenticated

if TYPE_CHECKING:
    from schema.moderation_actions import Sanction
    from schema.research import MyReward

FORMER_MEMBER = {"fi": "entinen jäsen", "sv": "tidigare medlem", "en": "former member"}


@strawberry.enum(description="An account's role.")
class Role(Enum):
    MEMBER = "member"
    MODERATOR = "moderator"
    RESEARCHER = "researcher"
    ADMIN = "admin"


@strawberry.enum(description="Interface and email language.")
class Language(Enum):
    FI = "fi"
    SV = "sv"
    EN = "en"


@strawberry.type(description="A member or staff account as others see it: a pseudonym only.")
class Member(relay.Node):
    id: relay.NodeID[int]
    display_name: str = strawberry.field(
        description='The public pseudonym; "former member" (localized) after resignation.'
    )
    is_former_member: bool
    staff_badge: Role | None = strawberry.field(
        description="The role of a staff account (so members can tell staff apart), else null."
    )

    @classmethod
    def from_row(cls, row: m.Member, language: str) -> Member:
        # A banned member's membership has ended too: shown as a former member.
        former = row.status in (m.MemberStatus.RESIGNED, m.MemberStatus.BANNED)
        return cls(
            id=row.id,
            display_name=FORMER_MEMBER[language] if former else (row.display_name or ""),
            is_former_member=former,
            staff_badge=None if row.role == m.Role.MEMBER else Role(row.role.value),
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Member | None]:
        # Pseudonyms are visible to signed-in accounts only, never to anonymous callers.
        if info.context.member is None:
            return [None for _ in node_ids]
        language = info.context.language
        return await nodes_in_order(
            m.Member.all(), node_ids, lambda row: cls.from_row(row, language)
        )


@strawberry.type(description="A signed-in device of the current account.")
class Session(relay.Node):
    id: relay.NodeID[int]
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    current: bool = strawberry.field(description="True for the session making this request.")

    @classmethod
    def from_row(cls, row: m.Session, current_id: int | None) -> Session:
        return cls(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            current=row.id == current_id,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Session | None]:
        me = info.context.member
        session = info.context.session
        if me is None:
            return [None for _ in node_ids]
        current = session.id if session else None
        # Only one's own sessions are visible; others' look like missing ones.
        return await nodes_in_order(
            m.Session.filter(member_id=me.id), node_ids, lambda row: cls.from_row(row, current)
        )


@strawberry.type(description="The signed-in account, as its owner sees it.")
class Me:
    row: strawberry.Private[m.Member]

    @strawberry.field(description="Global id of this account's public Member node.")
    def id(self) -> relay.GlobalID:
        return relay.GlobalID("Member", str(self.row.id))

    @strawberry.field
    def login_name(self) -> str:
        return self.row.login_name or ""

    @strawberry.field
    def display_name(self) -> str:
        return self.row.display_name or ""

    @strawberry.field
    def role(self) -> Role:
        return Role(self.row.role.value)

    @strawberry.field
    def language(self) -> Language:
        return Language(self.row.language.value)

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(
        description="True when a newer rules version must be accepted before writing."
    )
    async def must_accept_rules(self) -> bool:
        if self.row.role != m.Role.MEMBER:
            return False
        return not await rules.has_accepted_current(self.row)

    @strawberry.field(
        description="Set while a moderator has suspended my writing rights (I can still read)."
    )
    def suspended_until(self) -> datetime | None:
        until = self.row.suspended_until
        return until if until is not None and until > clock.now() else None

    @strawberry.field(description="Moderators' warnings to me, newest first (acknowledge them).")
    async def warnings(
        self, info: Info
    ) -> list[Annotated[Sanction, strawberry.lazy("schema.moderation_actions")]]:
        from models.moderation import MemberSanction, SanctionKind
        from schema.moderation_actions import Sanction as SanctionType

        rows = await MemberSanction.filter(member_id=self.row.id, kind=SanctionKind.WARN).order_by(
            "-id"
        )
        return [SanctionType.from_row(r) for r in rows]

    @strawberry.field(description="Study invitations by email (in-app ones always come).")
    def study_emails(self) -> bool:
        return self.row.study_emails

    @strawberry.field(description="Prizes I have won in studies' draws, newest first.")
    async def rewards(
        self, info: Info
    ) -> list[Annotated[MyReward, strawberry.lazy("schema.research")]]:
        from schema.research import my_rewards

        return await my_rewards(self.row, info.context.language)

    @strawberry.field(description="This account's signed-in sessions, newest first.")
    async def sessions(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[Session]:
        current = info.context.session.id if info.context.session else None
        return await paginate(
            m.Session.filter(member_id=self.row.id),
            first,
            after,
            lambda row: Session.from_row(row, current),
        )


@strawberry.input(description="What registering needs. The rules version must be the current one.")
class RegisterInput:
    email: str
    birth_date: date = strawberry.field(description="Checked for age 16+; only the year is kept.")
    language: Language
    login_name: str
    display_name: str = strawberry.field(description="The public pseudonym others see.")
    password: str
    rules_version_id: relay.GlobalID


@strawberry.type(
    description="Registration received. The same answer whether or not the address was known."
)
class RegisterSuccess:
    email_sent: bool = strawberry.field(description="Always true: check your inbox.")


@strawberry.type
class VerifyEmailSuccess:
    member: Member


@strawberry.input
class LoginInput:
    login: str = strawberry.field(description="Login name or email address.")
    password: str


@strawberry.type(description="Signed in. Send the token as `Authorization: Bearer <token>`.")
class LoginSuccess:
    token: str
    expires_at: datetime
    me: Me


@strawberry.type
class Done:
    ok: bool = True


@strawberry.input
class UpdateProfileInput:
    display_name: str | None = None
    login_name: str | None = None
    language: Language | None = None


@strawberry.type
class UpdateProfileSuccess:
    me: Me


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class RequestEmailChangeInput:
    password: str
    new_email: str


@strawberry.input
class ResetPasswordInput:
    token: str
    new_password: str


Failure = InputError | NotAllowedError | RateLimitedError
RegisterResult = Annotated[RegisterSuccess | Failure, strawberry.union("RegisterResult")]
VerifyEmailResult = Annotated[VerifyEmailSuccess | Failure, strawberry.union("VerifyEmailResult")]
LoginResult = Annotated[LoginSuccess | Failure, strawberry.union("LoginResult")]
DoneResult = Annotated[Done | Failure, strawberry.union("DoneResult")]
UpdateProfileResult = Annotated[
    UpdateProfileSuccess | Failure, strawberry.union("UpdateProfileResult")
]


def _rules_id(gid: relay.GlobalID) -> int:
    # Any id that is not a rules version's is "not the current rules", on that field.
    node_id = db_id(gid.node_id)
    return node_id if gid.type_name == "RulesVersion" and node_id is not None else 0


def _me(info: Info) -> m.Member:
    member = info.context.member
    assert member is not None  # guaranteed by IsAuthenticated
    return member


@strawberry.type
class MembersQuery:
    @strawberry.field(description="The signed-in account, or null when not signed in.")
    def me(self, info: Info) -> Me | None:
        member = info.context.member
        return Me(row=member) if member is not None else None


@strawberry.type
class MembersMutation:
    @strawberry.mutation(description="Join the community. A verification email always follows.")
    async def register(self, info: Info, input: RegisterInput) -> RegisterResult:
        try:
            await accounts.do_register(
                email=input.email,
                birth_date=input.birth_date,
                language=input.language.value,
                login_name=input.login_name,
                display_name=input.display_name,
                password=input.password,
                rules_version_id=_rules_id(input.rules_version_id),
            )
        except UserError as exc:
            return failure(exc, info)
        return RegisterSuccess(email_sent=True)

    @strawberry.mutation(description="Confirm the email address with the token from the link.")
    async def verify_email(self, info: Info, token: str) -> VerifyEmailResult:
        try:
            member = await accounts.do_verify_email(token)
        except UserError as exc:
            return failure(exc, info)
        return VerifyEmailSuccess(member=Member.from_row(member, info.context.language))

    @strawberry.mutation(description="Sign in with a login name or email and a password.")
    async def login(self, info: Info, input: LoginInput) -> LoginResult:
        try:
            signed_in = await sessions.do_login(
                input.login, input.password, info.context.client_address
            )
        except UserError as exc:
            return failure(exc, info)
        return LoginSuccess(
            token=signed_in.token,
            expires_at=signed_in.session.expires_at,
            me=Me(row=signed_in.member),
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated], description="End this session.")
    async def logout(self, info: Info) -> DoneResult:
        session = info.context.session
        assert session is not None
        await sessions.do_logout(session)
        return Done()

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="End one of my sessions."
    )
    async def revoke_session(self, info: Info, id: relay.GlobalID) -> DoneResult:
        try:
            await sessions.do_revoke_session(_me(info), require_id(id, "Session", "id"))
        except UserError as exc:
            return failure(exc, info)
        return Done()

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="End every session, this one included."
    )
    async def logout_everywhere(self, info: Info) -> DoneResult:
        await sessions.do_logout_everywhere(_me(info))
        return Done()

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_profile(self, info: Info, input: UpdateProfileInput) -> UpdateProfileResult:
        try:
            member = await accounts.do_update_profile(
                _me(info),
                display_name=input.display_name,
                login_name=input.login_name,
                language=input.language.value if input.language else None,
            )
        except UserError as exc:
            return failure(exc, info)
        return UpdateProfileSuccess(me=Me(row=member))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Change the password; every other session ends.",
    )
    async def change_password(self, info: Info, input: ChangePasswordInput) -> DoneResult:
        try:
            await accounts.do_change_password(
                _me(info), info.context.session, input.current_password, input.new_password
            )
        except UserError as exc:
            return failure(exc, info)
        return Done()

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Start an email change: a link goes to the new address, a notice to the old.",
    )
    async def request_email_change(self, info: Info, input: RequestEmailChangeInput) -> DoneResult:
        try:
            await accounts.do_request_email_change(_me(info), input.password, input.new_email)
        except UserError as exc:
            return failure(exc, info)
        return Done()

    @strawberry.mutation(description="Confirm a new email address with the token from the link.")
    async def confirm_email_change(self, info: Info, token: str) -> DoneResult:
        try:
            await accounts.do_confirm_email_change(token)
        except UserError as exc:
            return failure(exc, info)
        return Done()

    @strawberry.mutation(
        description="Email a password-reset link. The same answer for any address."
    )
    async def request_password_reset(self, info: Info, email: str) -> DoneResult:
        await accounts.do_request_password_reset(email)
        return Done()

    @strawberry.mutation(
        description="Set a new password with the token from the link; all sessions end."
    )
    async def reset_password(self, info: Info, input: ResetPasswordInput) -> DoneResult:
        try:
            await accounts.do_reset_password(input.token, input.new_password)
        except UserError as exc:
            return failure(exc, info)
        return Done()

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Resign now. Contact data, credentials and sessions are deleted at once.",
    )
    async def resign(self, info: Info, password: str) -> DoneResult:
        try:
            await accounts.do_resign(_me(info), password)
        except UserError as exc:
            return failure(exc, info)
        return Done()
