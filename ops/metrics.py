"""Prometheus metrics of one server process (scrape each worker's ``/metrics``).

Counters and histograms are updated where things happen (the HTTP middleware,
the websocket handlers, the bus, the GraphQL error hook); the outbox backlog
is read from the database at scrape time. Labels are low-cardinality by
construction: route templates, methods, status classes, error codes, kinds.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "community_http_requests",
    "HTTP requests answered, by route, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "community_http_request_seconds",
    "HTTP request latency in seconds, by route.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
HTTP_IN_FLIGHT = Gauge(
    "community_http_requests_in_flight",
    "HTTP requests being served now.",
    registry=REGISTRY,
)
GRAPHQL_OPERATIONS = Counter(
    "community_graphql_operations",
    "GraphQL operations executed, by type (query, mutation, subscription).",
    ["type"],
    registry=REGISTRY,
)
GRAPHQL_ERRORS = Counter(
    "community_graphql_errors",
    "GraphQL errors answered (request errors and field errors), by code.",
    ["code"],
    registry=REGISTRY,
)
WEBSOCKETS_OPEN = Gauge(
    "community_websockets_open",
    "Open websocket connections.",
    registry=REGISTRY,
)
WEBSOCKET_CLOSES = Counter(
    "community_websocket_closes",
    "Websockets closed by the server for a reason of its own, by close code.",
    ["code"],
    registry=REGISTRY,
)
SUBSCRIPTIONS_ACTIVE = Gauge(
    "community_subscriptions_active",
    "Subscriptions running now.",
    registry=REGISTRY,
)
SLOW_CONSUMERS = Counter(
    "community_slow_consumers",
    "Websockets closed because a subscriber's event queue overflowed.",
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "community_bus_events_published",
    "Events published on the broadcast bus.",
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "community_bus_publish_failures",
    "Events the bus could not take (subscribers replay them from the database).",
    registry=REGISTRY,
)
EVENTS_DELIVERED = Counter(
    "community_events_delivered",
    "Subscription results sent to clients.",
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "community_outbox_backlog",
    "Email messages waiting in the outbox (read at scrape time).",
    ["state"],
    registry=REGISTRY,
)
BUS_READY = Gauge(
    "community_bus_ready",
    "1 when the broadcast bus is connected (read at scrape time).",
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
