"""``GET /metrics``: this web process's metrics and the fleet's, in Prometheus's text
format, for an admin or the scrape token (``VIDFLEET_METRICS_TOKEN``, web/auth.py).

Each app has a registry of its own (its process's, as uvicorn runs one app a
process; several apps in one test process don't collide):

- ``vidfleet_http_requests_total`` and ``vidfleet_http_request_duration_seconds``:
  web/request_metrics.py;
- the hub's sockets and events (``vidfleet_websockets_open``,
  ``vidfleet_websocket_events_delivered_total``, ``..._conflated_total``,
  ``vidfleet_websocket_slow_closed_total``): counters the hub keeps anyway as plain
  integers, read at scrape time, so no event pays for a metric;
- the fleet's queues (``vidfleet_queue_messages``: ready, delayed and dead per queue)
  and jobs (``vidfleet_jobs`` by kind and status), measured by the handler at scrape
  time, since only async code reaches the stores and a collector is synchronous. A
  store that doesn't answer within ``SAMPLE_TIMEOUT_S`` leaves its family out and
  counts a ``vidfleet_scrape_errors_total`` for it: the scrape still answers 200;
- the process's CPU, memory and file descriptors, and Python's GC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from starlette import status
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.models import Job, Role
from db.outages import describe_failure, unavailable_store
from db.rabbitmq import UNAVAILABLE as RABBITMQ_UNAVAILABLE
from db.rabbitmq import BrokerSender, queue_counts
from web.apidoc import Answer, documented
from web.auth import SCRAPER, principal_of
from web.errors import ApiError
from web.fleet import broker_of, queue_depths

logger = logging.getLogger(__name__)

SAMPLE_TIMEOUT_S = 2.0


class HubCollector:
    """The progress hub's counters, read when scraped (none before the app started)."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        hub = getattr(self.state, "hub", None)
        if hub is None:
            return []
        return [
            GaugeMetricFamily(
                "vidfleet_websockets_open", "WebSockets open on this process", hub.open_sockets
            ),
            CounterMetricFamily(
                "vidfleet_websocket_events_delivered",
                "job events sent to this process's WebSockets",
                hub.delivered,
            ),
            CounterMetricFamily(
                "vidfleet_websocket_events_conflated",
                "progress events replaced by a newer one before a slow socket took them",
                hub.conflated,
            ),
            CounterMetricFamily(
                "vidfleet_websocket_slow_closed",
                "WebSockets closed with 1013 for reading slower than events came",
                hub.slow_closed,
            ),
        ]


class FleetSample:
    """The fleet's families as the handler last measured them; it sets ``families``
    and renders at once, with no await between, so scrapes never see each other's."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return self.families


class WebMetrics:
    """One app's registry and the metrics its middleware and handler update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vidfleet_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vidfleet_http_request_duration_seconds",
            "seconds from a request to its response's start, by route template and method",
            ["route", "method"],
            registry=self.registry,
        )
        self.scrape_errors = Counter(
            "vidfleet_scrape_errors",
            "scrapes that left out a family because its store did not answer",
            ["source"],
            registry=self.registry,
        )
        self.fleet = FleetSample()
        self.registry.register(self.fleet)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def watch(self, state: State) -> None:
        """Report the hub of the app whose state this is, once it has one."""
        self.registry.register(HubCollector(state))


async def _queue_family(request: Request) -> Metric:
    sender = request.app.state.courier.sender
    if isinstance(sender, BrokerSender):  # the broker on RabbitMQ: its own counts
        counts = await sender.call(lambda: queue_counts(sender.broker))
    else:
        depths = await queue_depths(request.app.state.redis, broker_of(request).namespace)
        counts = [(depth.queue, depth.ready, depth.delayed, depth.dead) for depth in depths]
    family = GaugeMetricFamily(
        "vidfleet_queue_messages",
        "messages in each broker queue: ready to be taken, delayed, dead-lettered",
        labels=["queue", "state"],
    )
    for queue, ready, delayed, dead in counts:
        for state, count in (("ready", ready), ("delayed", delayed), ("dead", dead)):
            family.add_metric([str(queue), state], count)
    return family


async def _jobs_family(request: Request) -> Metric:
    query = select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    async with request.app.state.db() as session:
        rows = (await session.execute(query)).all()
    family = GaugeMetricFamily(
        "vidfleet_jobs", "jobs by kind and status", labels=["kind", "status"]
    )
    for kind, job_status, count in rows:
        family.add_metric([kind, str(job_status)], count)
    return family


async def _sample(
    request: Request, metrics: WebMetrics, source: str, measure: Callable[[Request], Awaitable[Any]]
) -> Metric | None:
    try:
        return await asyncio.wait_for(measure(request), SAMPLE_TIMEOUT_S)
    except Exception as exc:
        gone = isinstance(exc, (TimeoutError, *RABBITMQ_UNAVAILABLE)) or unavailable_store(exc)
        if not gone:
            raise  # anything but a store that cannot answer is a bug
        logger.warning("metrics: the %s did not answer (%s)", source, describe_failure(exc))
        metrics.scrape_errors.labels(source).inc()
        return None


@documented(
    "Prometheus metrics of this web process (admin, or the bearer VIDFLEET_METRICS_TOKEN)",
    {200: Answer("The text exposition format", None, "text/plain")},
    description="Requests by route template and status, latency histograms, WebSocket "
    "connections and events, queue depth and jobs by kind and status (absent, with "
    "`vidfleet_scrape_errors_total` raised, when Redis or the database does not answer).",
)
async def metrics_endpoint(request: Request) -> Response:
    principal = principal_of(request)
    if principal.role != Role.admin and principal.credential != SCRAPER:
        raise ApiError(status.HTTP_403_FORBIDDEN, "forbidden", "only an admin may read metrics")
    metrics: WebMetrics = request.app.state.metrics
    on_rabbitmq = isinstance(request.app.state.courier.sender, BrokerSender)
    queues = await _sample(request, metrics, "rabbitmq" if on_rabbitmq else "redis", _queue_family)
    jobs = await _sample(request, metrics, "database", _jobs_family)
    metrics.fleet.families = [family for family in (queues, jobs) if family is not None]
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
