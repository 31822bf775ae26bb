"""Prometheus metrics: request latency, command outcomes by code, projection lag."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class Metrics:
    """One registry per API instance, so several apps (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "ledger_http_request_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.commands = Counter(
            "ledger_commands_total",
            "Commands by route and outcome code",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "ledger_projection_lag_events",
            "Head position minus view position",
            ["view"],
            registry=self.registry,
        )

    def command(self, request: Request, outcome: str) -> None:
        if request.method == "POST":
            self.commands.labels(route_template(request.scope), outcome).inc()

    def render(self, lag: dict[str, int]) -> bytes:
        for view, value in lag.items():
            self.lag.labels(view).set(value)
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class LatencyMiddleware:
    """Plain ASGI middleware (no per-request task overhead) timing every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.latency.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started
            )
