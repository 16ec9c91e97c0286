"""Prometheus metrics of a running middleware, for the dashboard server's ``/metrics``.

:class:`MiddlewareCollector` is a ``prometheus_client`` collector that reads, at scrape time,
the latest status the dashboard polled over RPC (router counters, services, topics, plugins,
account, risk) and the dashboard's own bus counters; nothing in the middleware's hot paths
is touched. RPC latency per service is a histogram of every call the router routed
(``aitrados_rpc_latency_seconds``, from the router's fixed-bucket counts in ``middleware.stats``);
``aitrados_rpc_probe_seconds`` is the round trip of the dashboard's own calls, seen from a client.

Names (all prefixed ``aitrados_``): ``rpc_requests_total``, ``rpc_replies_total``,
``rpc_errors_total``, ``rpc_unknown_service_total``, ``rpc_malformed_total``,
``rpc_workers_lost_total``, ``rpc_service_requests_total{service}``,
``rpc_service_workers{service}``, ``rpc_latency_seconds{service}`` (histogram),
``rpc_probe_seconds{service}`` (histogram),
``rpc_probe_errors_total{service}``, ``pubsub_messages_total{prefix}``,
``pubsub_rate{prefix}``, ``pubsub_gaps_total{prefix}`` (messages subscribers missed: the
middleware process's and those other processes reported), ``pubsub_malformed_total``, ``plugin_errors_total{plugin}``, ``orders_total{status}``,
``fills_total``, ``equity``, ``cash``, ``unrealised_pnl``, ``realised_pnl``,
``positions``, ``kill_switch_tripped``, ``replay_step``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..bus.gaps import topic_prefix

__all__ = ["MiddlewareCollector", "Metrics", "topic_prefix"]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _latency_family(latency: Any) -> HistogramMetricFamily:
    """``aitrados_rpc_latency_seconds{service}`` from the router's per-service bucket counts
    (``middleware.stats`` ``rpc.latency``: per-bucket counts, made cumulative here)."""
    h = HistogramMetricFamily("aitrados_rpc_latency_seconds",
                              "RPC round trip through the router per service (request in to reply back), every call",
                              labels=["service"])
    for name, d in sorted((latency or {}).items()) if isinstance(latency, Mapping) else ():
        bounds, counts = d.get("bounds"), d.get("counts")
        if not isinstance(bounds, list) or not isinstance(counts, list) or len(counts) != len(bounds) + 1:
            continue
        buckets: list[tuple[str, float]] = []
        cum = 0.0
        for le, n in zip([*map(repr, map(float, bounds)), "+Inf"], counts):
            cum += _num(n) or 0.0
            buckets.append((le, cum))
        h.add_metric([str(name)], buckets, _num(d.get("sum")) or 0.0)
    return h


class MiddlewareCollector(Collector):
    """Builds the metric families from ``read()`` -> ``(status, bus)`` at each scrape.

    :param read: returns the last polled status (see ``DashboardServer``) and the dashboard's bus
        counters ``{"fills": n, "order_status": {...}, "step": n}``
    """

    def __init__(self, read: Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        """The metric families of this scrape."""
        status, bus = self.read()
        rpc = (status.get("stats") or {}).get("rpc") or {}
        for key in ("requests", "replies", "errors", "unknown_service", "malformed", "workers_lost"):
            c = CounterMetricFamily(f"aitrados_rpc_{key}", f"RPC router: {key.replace('_', ' ')} since start")
            c.add_metric([], _num(rpc.get(key)) or 0.0)
            yield c
        req = CounterMetricFamily("aitrados_rpc_service_requests", "RPC requests routed to a service",
                                  labels=["service"])
        wk = GaugeMetricFamily("aitrados_rpc_service_workers", "workers serving a service", labels=["service"])
        for name, info in sorted((status.get("services") or {}).items()):
            req.add_metric([name], _num(info.get("requests")) or 0.0)
            wk.add_metric([name], float(len(info.get("workers") or [])))
        yield req
        yield wk
        yield _latency_family(rpc.get("latency"))
        msgs = CounterMetricFamily("aitrados_pubsub_messages", "messages through the pub/sub router",
                                   labels=["prefix"])
        rate = GaugeMetricFamily("aitrados_pubsub_rate", "messages per second (router's estimate)",
                                 labels=["prefix"])
        counts: dict[str, float] = {}
        rates: dict[str, float] = {}
        for topic, t in (status.get("topics") or {}).items():
            p = topic_prefix(topic)
            counts[p] = counts.get(p, 0.0) + (_num(t.get("count")) or 0.0)
            rates[p] = rates.get(p, 0.0) + (_num(t.get("rate")) or 0.0)
        for p in sorted(counts):
            msgs.add_metric([p], counts[p])
            rate.add_metric([p], rates[p])
        yield msgs
        yield rate
        gaps = CounterMetricFamily("aitrados_pubsub_gaps", "messages subscribers missed (sequence gaps), per topic "
                                   "prefix: the middleware's process and reporting processes", labels=["prefix"])
        by_prefix = ((status.get("stats") or {}).get("pubsub") or {}).get("gaps") or {}
        for p in sorted(by_prefix) if isinstance(by_prefix, Mapping) else ():
            gaps.add_metric([str(p)], _num(by_prefix[p]) or 0.0)
        yield gaps
        mal = CounterMetricFamily("aitrados_pubsub_malformed", "malformed messages dropped by the pub/sub router")
        mal.add_metric([], _num(((status.get("stats") or {}).get("pubsub") or {}).get("malformed")) or 0.0)
        yield mal
        perr = CounterMetricFamily("aitrados_plugin_errors", "errors raised by a plugin's hooks", labels=["plugin"])
        for p in (status.get("plugins") or {}).get("plugins") or []:
            errs = p.get("errors") or {}
            perr.add_metric([str(p.get("name", "?"))], float(sum(v for v in errs.values() if _num(v) is not None)))
        yield perr
        orders = CounterMetricFamily("aitrados_orders", "order events by status", labels=["status"])
        for st, n in sorted((bus.get("order_status") or {}).items()):
            orders.add_metric([st], float(n))
        yield orders
        fills = CounterMetricFamily("aitrados_fills", "fills published")
        fills.add_metric([], float(bus.get("fills", 0)))
        yield fills
        acct = status.get("account") or {}
        for key, help_ in (("equity", "account equity"), ("cash", "account cash"),
                           ("unrealised_pnl", "unrealised PnL"), ("realised_pnl", "realised PnL")):
            v = _num(acct.get(key))
            if v is not None:
                g = GaugeMetricFamily(f"aitrados_{key}", help_)
                g.add_metric([], v)
                yield g
        pos = GaugeMetricFamily("aitrados_positions", "open positions (non-zero quantity)")
        pos.add_metric([], float(sum(1 for p in status.get("positions") or [] if _num(p.get("quantity")))))
        yield pos
        risk = status.get("risk")
        if isinstance(risk, Mapping):
            ks = GaugeMetricFamily("aitrados_kill_switch_tripped", "1 when the kill switch is tripped")
            ks.add_metric([], 1.0 if risk.get("kill_switch") else 0.0)
            yield ks
        step = GaugeMetricFamily("aitrados_replay_step", "replay time step last seen")
        step.add_metric([], float(bus.get("step", 0)))
        yield step


class Metrics:
    """The registry behind ``/metrics``: the collector plus the RPC probe histogram.

    :param read: see :class:`MiddlewareCollector`
    """

    def __init__(self, read: Callable[[], tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(MiddlewareCollector(read))
        self.probe = Histogram("aitrados_rpc_probe_seconds", "round trip of the dashboard's RPC calls, per service",
                               ["service"], registry=self.registry,
                               buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0))
        self.probe_errors = Counter("aitrados_rpc_probe_errors", "failed RPC calls of the dashboard, per service",
                                    ["service"], registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
