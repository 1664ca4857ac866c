"""Permission classes: who may resolve a field. Messages are short and neutral."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry.permission import BasePermission

from models.community import Role
from schema.context import Info


class IsAuthenticated(BasePermission):
    """Any signed-in account: member or staff."""

    message = "Sign in first."
    error_extensions = {"code": "UNAUTHENTICATED"}  # noqa: RUF012 - as Strawberry declares it

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return info.context.member is not None


class _HasRole(BasePermission):
    roles: frozenset[Role] = frozenset()
    message = "Not allowed."
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012 - as Strawberry declares it

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        member = info.context.member
        if member is None:
            # Anonymous callers are told to sign in, not that they lack a role.
            raise GraphQLError(IsAuthenticated.message, extensions={"code": "UNAUTHENTICATED"})
        return member.role in self.roles


class IsAdmin(_HasRole):
    """Operator administrators: the only role that may reach contact data."""

    roles = frozenset({Role.ADMIN})


class IsStaff(_HasRole):
    """Moderators, researchers and admins."""

    roles = frozenset({Role.MODERATOR, Role.RESEARCHER, Role.ADMIN})
