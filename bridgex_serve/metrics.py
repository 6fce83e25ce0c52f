"""Prometheus metrics: requests, rewrites by task and bridge, routes, copy fallbacks, passthroughs, upstream
latency, errors.

Each proxy app owns its registry (tests build many apps in one process); the vLLM plugin registers into
the default registry so the metrics appear on vLLM's own /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("bridgex_requests", "Client requests by endpoint", ["endpoint"], registry=r)
        self.rewrites = Counter(
            "bridgex_rewrites",
            "Bridged requests by task, bridge and mode",
            ["task", "bridge", "mode"],
            registry=r,
        )
        self.passthroughs = Counter(
            "bridgex_passthroughs",
            "Requests with a bridgex field sent upstream unchanged",
            ["reason"],
            registry=r,
        )
        self.routes = Counter(
            "bridgex_routes",
            "Rewritten requests by the route planned and where the decision came from",
            ["route", "decision_source"],
            registry=r,
        )
        self.copy_fallbacks = Counter(
            "bridgex_copy_fallbacks",
            "Bridged answers that copied the source or the bridge rendering and were asked again directly",
            ["task", "bridge", "mode", "reason"],
            registry=r,
        )
        self.errors = Counter("bridgex_errors", "Error responses by status", ["status"], registry=r)
        self.upstream_latency = Histogram(
            "bridgex_upstream_latency_seconds",
            "Upstream call latency (to the response head)",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter("bridgex_index_reloads", "Index reloads by outcome", ["outcome"], registry=r)
        self._request_children: dict = {}
        self._latency_children: dict = {}

    def request(self, endpoint: str) -> None:
        child = self._request_children.get(endpoint)
        if child is None:
            child = self._request_children[endpoint] = self.requests.labels(endpoint)
        child.inc()

    def latency(self, path: str, seconds: float) -> None:
        child = self._latency_children.get(path)
        if child is None:
            child = self._latency_children[path] = self.upstream_latency.labels(path)
        child.observe(seconds)

    def rewrite(self, task: str, bridge: str | None, mode: str, decision_source: str = "default") -> None:
        self.rewrites.labels(task, bridge or "none", mode).inc()
        route = "distilled" if mode == "distilled" else "bridge" if bridge else "direct"
        self.routes.labels(route, decision_source).inc()

    def copy_fallback(self, task: str, bridge: str | None, mode: str, reason: str) -> None:
        self.copy_fallbacks.labels(task, bridge or "none", mode, reason).inc()

    def passthrough(self, reason: str) -> None:
        self.passthroughs.labels(reason).inc()

    def error(self, status: int) -> None:
        self.errors.labels(str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
