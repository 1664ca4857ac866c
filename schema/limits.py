"""Query limits and caches, built once so the parser and validation caches hit.

``QueryDepthLimiter(...)`` and ``MaxAliasesLimiter(...)`` create a new rule
class on every construction, which would defeat the validation cache if they
were constructed per request; here their rule classes are built once and
added by a fresh ``AddValidationRules`` per request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    get_named_type,
    validate,
    visit,
)
from graphql.language import Visitor
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

from ops import metrics
from ops.logs import redact
from ops.shutdown import DRAIN

log = logging.getLogger("community.graphql")


UNAVAILABLE_MESSAGE = "The service is temporarily unavailable; please try again shortly."
_UNAVAILABLE = frozenset(
    {
        "AdminShutdownError",
        "CannotConnectNowError",
        "ClientCannotConnectError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CrashShutdownError",
        "DBConnectionError",
        "InterfaceError",
        "InternalClientError",
        "PostgresConnectionError",
        "TooManyConnectionsError",
    }
)


def is_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) says a database or the network is unreachable."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError | TimeoutError) or type(exc).__name__ in _UNAVAILABLE:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def error_code_of(error: GraphQLError) -> str:
    """The machine code an error is answered with (for the metrics)."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if should_mask(error):
        return "SERVICE_UNAVAILABLE" if is_unavailable(error.original_error) else "INTERNAL_ERROR"
    return "GRAPHQL_ERROR"


class CommunityMaskErrors(MaskErrors):
    """Unexpected errors are masked, with a code; an unreachable database says so.

    graphql-core quotes a rejected value in its coercion messages ("Value
    cannot represent a Date: ..."): anything shaped like an email address or
    an identity code is cut out of every error message before it is answered.
    """

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = super()._process_errors(errors)
        for error in processed:
            cleaned = redact(error.message)
            if cleaned != error.message:
                error.message = cleaned
        return processed

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        unavailable = is_unavailable(error.original_error)
        return GraphQLError(
            message=UNAVAILABLE_MESSAGE if unavailable else self.error_message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=None,
            extensions={"code": "SERVICE_UNAVAILABLE" if unavailable else "INTERNAL_ERROR"},
        )


class OperationTracker(SchemaExtension):
    """Counts operations by type; a mutation's execution holds off graceful shutdown."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except RuntimeError:
            kind = "unknown"
        metrics.GRAPHQL_OPERATIONS.labels(kind).inc()
        if kind == "mutation":
            with DRAIN.write():
                yield
        else:
            yield


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


# Text no one types: C0/C1 controls (but tab, LF, CR), lone surrogates, the bidi
# embedding/override/isolate controls used to disguise text, and noncharacters.
BAD_TEXT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufffe\uffff]"
)


def has_bad_text(value: Any) -> bool:
    """True when any string in ``value`` (nested dicts and lists, iteratively) has bad text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if BAD_TEXT.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _StringLiterals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.bad = False

    def enter_string_value(self, node: StringValueNode, *_: Any) -> Any:
        if BAD_TEXT.search(node.value):
            self.bad = True
            return self.BREAK
        return None


def document_has_bad_text(query: str, document: DocumentNode) -> bool:
    if BAD_TEXT.search(query):
        return True
    if "\\" not in query:
        return False  # no escapes: the literals are the raw text just checked
    finder = _StringLiterals()
    visit(document, finder)
    return finder.bad


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    limit: int,
) -> int:
    """Field selections, each times the page sizes around it; stops counting past ``limit``.

    Every selection adds at least one, so the walk ends after ``limit`` steps
    whatever fragments a document nests (cycles are refused by validation).
    """
    fragments: dict[str, FragmentDefinitionNode] = {}
    operation: OperationDefinitionNode | None = None
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments[definition.name.value] = definition
        elif isinstance(definition, OperationDefinitionNode):
            if operation_name is None or (
                definition.name is not None and definition.name.value == operation_name
            ):
                operation = operation or definition
    if operation is None:
        return 0
    variables = variables or {}
    defaults = {
        d.variable.name.value: d.default_value.value
        for d in operation.variable_definitions or ()
        if isinstance(d.default_value, IntValueNode)
    }
    root = schema.get_root_type(operation.operation)
    total = 0

    def page_size(node: FieldNode, field: Any) -> int:
        for argument in node.arguments or ():
            if argument.name.value in ("first", "last"):
                value = argument.value
                if isinstance(value, IntValueNode):
                    return max(int(value.value), 1)
                if isinstance(value, VariableNode):
                    given = variables.get(value.name.value, defaults.get(value.name.value))
                    try:
                        return max(int(given), 1)  # type: ignore[arg-type]
                    except (TypeError, ValueError):
                        return 1
        for name in ("first", "last"):
            argument_def = field.args.get(name) if field is not None else None
            if argument_def is not None and isinstance(argument_def.default_value, int):
                return max(argument_def.default_value, 1)
        return 1

    def walk(selections: SelectionSetNode, parent: Any, multiplier: int) -> None:
        nonlocal total
        for selection in selections.selections:
            if total > limit:
                return
            if isinstance(selection, FieldNode):
                total += multiplier
                if selection.selection_set is None:
                    continue
                fields = getattr(parent, "fields", {})
                field = fields.get(selection.name.value)
                inner = get_named_type(field.type) if field is not None else None
                walk(selection.selection_set, inner, multiplier * page_size(selection, field))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = schema.get_type(condition.name.value) if condition else parent
                walk(selection.selection_set, inner, multiplier)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    inner = schema.get_type(fragment.type_condition.name.value)
                    walk(fragment.selection_set, inner, multiplier)

    walk(operation.selection_set, root, 1)
    return total


def input_guard(max_cost: int) -> type[SchemaExtension]:
    """An extension refusing bad text and costly documents before execution."""

    class InputGuard(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            # Runs after the validation cache has set the validation errors
            # (their hooks run first), before Strawberry looks at them.
            context = self.execution_context
            document = context.graphql_document
            if not context.pre_execution_errors and document is not None:
                problem: GraphQLError | None = None
                if has_bad_text(context.variables) or document_has_bad_text(
                    context.query or "", document
                ):
                    problem = GraphQLError(
                        "Text contains control or invisible formatting characters.",
                        extensions={"code": "INVALID_TEXT"},
                    )
                else:
                    schema = context.schema._schema  # type: ignore[attr-defined]
                    cost = query_cost(
                        schema, document, context.operation_name, context.variables, max_cost
                    )
                    if cost > max_cost:
                        problem = GraphQLError(
                            f"The query is too complex (over {max_cost} fields with page"
                            " sizes counted); ask for smaller pages or fewer fields.",
                            extensions={"code": "QUERY_TOO_COMPLEX"},
                        )
                if problem is not None:
                    context.pre_execution_errors = [problem]
            yield

    return InputGuard


def build_extensions(
    *, production: bool, max_depth: int, max_aliases: int, max_tokens: int, max_cost: int
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
        input_guard(max_cost),
        lambda: CommunityMaskErrors(should_mask_error=should_mask),
    ]
