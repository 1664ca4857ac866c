"""One execution of a subscription event, shared by every subscriber who would get the same result.

graphql-core executes a subscription's selection set once per subscriber per
event. When thousands of members watch one thread, that is the server's main
cost. A payload that carries a ``share_key`` (everything about it that can
differ between viewers: the event, the viewer's language, whether they see a
removed post's text, whether it is theirs, their own reactions) is executed
once per (share key, operation, variables) in this worker, and the result is
handed to every other subscriber with the same key. Results with errors are
never shared, and the cache is small and bounded: keys name one event, so old
entries are simply evicted. An entry keeps its operation node alive, so the
node's ``id`` in the key cannot be reused by another document while it lives.

Each event also gets an executor of its own, memo included (see
``build_per_event_executor``): graphql-core 3.3 shares one memo between a
subscription and all its events, which grew by every event for as long as
the subscription lived.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

from graphql import ExecutionResult, OperationType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

CACHE_SIZE = 512
_shared: OrderedDict[tuple[Any, ...], tuple[object, ExecutionResult]] = OrderedDict()
stats = {"executed": 0, "shared": 0}  # for metrics and tests


def _remember(key: tuple[Any, ...], operation: object, result: Any) -> Any:
    if isinstance(result, ExecutionResult) and not result.errors:
        _shared[key] = (operation, result)
        if len(_shared) > CACHE_SIZE:
            _shared.popitem(last=False)
    return result


class SharedEventExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, reusing identical subscription event results."""

    def build_per_event_executor(self, payload: Any) -> Any:
        """The per-event copy of the subscription's executor, with a memo of its own.

        graphql-core copies the executor shallowly, so every event's executor
        shared the subscription's ``_relevant_sub_fields``; that memo is keyed
        by the identity of each event's freshly collected field lists and
        keeps them alive, so it grew by every executed event (the soak's
        steady memory growth). A fresh dict per event bounds it to one event.
        """
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        share_key = getattr(self.root_value, "share_key", None)
        if share_key is None or self.operation.operation != OperationType.SUBSCRIPTION:
            return super().execute_operation(serially)
        variables = json.dumps(self.variable_values.coerced, sort_keys=True, default=str)
        # The operation node is the same object for the same document (parser cache).
        key = (share_key, id(self.operation), variables)
        cached = _shared.get(key)
        if cached is not None:
            _shared.move_to_end(key)
            stats["shared"] += 1
            return cached[1]
        stats["executed"] += 1
        result = super().execute_operation(serially)
        if isinstance(result, Awaitable):

            async def finish() -> Any:
                return _remember(key, self.operation, await result)

            return finish()
        return _remember(key, self.operation, result)
