"""Query limits and caches, built once so the parser and validation caches hit.

``QueryDepthLimiter(...)`` and ``MaxAliasesLimiter(...)`` create a new rule
class on every construction, which would defeat the validation cache if they
were constructed per request; here their rule classes are built once and
added by a fresh ``AddValidationRules`` per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from graphql import GraphQLError, NoSchemaIntrospectionCustomRule, validate
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

log = logging.getLogger("community.graphql")


def should_mask(error: GraphQLError) -> bool:
    """Mask only unexpected exceptions; syntax, validation, permission errors stay."""
    original = error.original_error
    if original is None:
        return False
    return not isinstance(original, GraphQLError)


@lru_cache(maxsize=512)
def _validate_without_suggestions(schema: Any, document: Any, rules: Any) -> list[GraphQLError]:
    return validate(
        schema,
        document,
        (*rules, MaybeNullValidationRule, OneOfInputValidationRule),
        hide_suggestions=True,
    )


class SafeParserCache(ParserCache):
    """ParserCache that leaves syntax errors to Strawberry's own handling.

    Stock ParserCache raises the parse error outside Strawberry's try/except on
    the websocket path, so the client got a bare "complete" instead of an error.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(  # type: ignore[attr-defined]
                context.query, **context.parse_options
            )
        except GraphQLError:
            pass  # the document stays unset; Strawberry parses again and reports it
        yield


class ValidationCacheWithoutSuggestions(SchemaExtension):
    """ValidationCache that also hides "Did you mean ...?" hints (production)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        context.pre_execution_errors = _validate_without_suggestions(
            context.schema._schema,  # type: ignore[attr-defined]
            context.graphql_document,
            context.validation_rules,
        )
        yield


def build_extensions(
    *, production: bool, max_depth: int, max_aliases: int, max_tokens: int
) -> list[Callable[[], SchemaExtension]]:
    rules: list[Any] = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    if production:
        rules.append(NoSchemaIntrospectionCustomRule)
    frozen = tuple(rules)
    validation: Callable[[], SchemaExtension] = (
        ValidationCacheWithoutSuggestions if production else (lambda: ValidationCache(maxsize=512))
    )
    return [
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(list(frozen)),
        lambda: SafeParserCache(maxsize=512),
        validation,
        lambda: MaskErrors(should_mask_error=should_mask),
    ]
