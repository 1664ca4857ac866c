"""The GraphQL schema: one module per domain, each contributing Query/Mutation mixins.

Field resolvers stay thin: they call ``resolvers`` (business logic) and map
its :class:`resolvers.errors.UserError` to typed error results.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry import relay
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from config import Settings
from ops import metrics
from schema.context import Info
from schema.discussions import (
    Area,
    DiscussionsMutation,
    DiscussionsQuery,
    DiscussionsSubscription,
    Post,
    Thread,
)
from schema.http import WebsocketSessionCheck
from schema.lifecycle import LifecycleMutation, LifecycleQuery
from schema.limits import (
    OperationTracker,
    build_extensions,
    error_code_of,
    is_unavailable,
    should_mask,
)
from schema.members import Member, MembersMutation, MembersQuery, Session
from schema.moderation import ModerationMutation, ModerationQuery
from schema.moderation_actions import (
    ModerationActionsMutation,
    ModerationActionsQuery,
    ModerationActionsSubscription,
)
from schema.notifications import (
    Notification,
    NotificationsMutation,
    NotificationsQuery,
    NotificationsSubscription,
)
from schema.privacy import AuditEntry, PrivacyMutation, PrivacyQuery
from schema.research import ResearchMutation, ResearchQuery
from schema.rules import RulesMutation, RulesQuery, RulesVersion
from schema.scalars import AWARE_DATETIME
from schema.sharing import SharedEventExecutionContext

log = logging.getLogger("community.graphql")


@strawberry.type
class Query(
    MembersQuery,
    RulesQuery,
    NotificationsQuery,
    PrivacyQuery,
    DiscussionsQuery,
    ModerationQuery,
    ModerationActionsQuery,
    ResearchQuery,
    LifecycleQuery,
):
    @strawberry.field(
        description="Any object by its global id; null when missing or not visible to you."
    )
    async def node(self, info: Info, id: relay.GlobalID) -> relay.Node | None:
        # A plain resolver (not relay.node()) so the schema can be built more than once.
        # Each Node type's resolve_nodes applies its own visibility rules.
        if id.type_name not in NODE_TYPE_NAMES:
            return None  # not a node type (or an interface): as missing
        try:
            return await id.resolve_node(info, required=False)
        except (KeyError, ValueError):
            return None  # malformed id: as missing


@strawberry.type
class Mutation(
    MembersMutation,
    RulesMutation,
    NotificationsMutation,
    PrivacyMutation,
    DiscussionsMutation,
    ModerationMutation,
    ModerationActionsMutation,
    ResearchMutation,
    LifecycleMutation,
):
    pass


@strawberry.type
class Subscription(
    NotificationsSubscription, DiscussionsSubscription, ModerationActionsSubscription
):
    pass


NODE_TYPES = [Member, Session, RulesVersion, Notification, AuditEntry, Area, Thread, Post]
NODE_TYPE_NAMES = frozenset(t.__name__ for t in NODE_TYPES)


class CommunitySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Expected errors (validation, permissions) are answers, not incidents:
        # log only the unexpected ones, with their traceback, never their variables.
        for error in errors:
            metrics.GRAPHQL_ERRORS.labels(error_code_of(error)).inc()
            if should_mask(error) and error.original_error is not None:
                original = error.original_error
                if is_unavailable(original):
                    log.warning(
                        "database or network unavailable in %s (%s)",
                        ".".join(str(p) for p in error.path or []) or "operation",
                        type(original).__name__,
                    )
                    continue
                log.error(
                    "unexpected error in %s",
                    ".".join(str(p) for p in error.path or []) or "operation",
                    exc_info=(type(original), original, original.__traceback__),
                )


def create_schema(settings: Settings | None = None) -> CommunitySchema:
    settings = settings or Settings()
    extensions: list[Any] = [
        WebsocketSessionCheck,
        *build_extensions(
            production=settings.production,
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
            max_cost=settings.max_query_cost,
        ),
        OperationTracker,
    ]
    return CommunitySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=NODE_TYPES,
        extensions=extensions,
        execution_context_class=SharedEventExecutionContext,
        config=StrawberryConfig(
            disable_field_suggestions=settings.production,
            scalar_map={datetime: AWARE_DATETIME},
        ),
    )


def sdl() -> str:
    """The schema's SDL, as exported to ``schema.graphql``."""
    return create_schema().as_str() + "\n"
