"""Prometheus metrics of the search service, through ``prometheus-client``.

* ``xlir_http_requests_total{endpoint,method,status}``: requests served, by route template (``/documents/{doc_id}``,
  never the raw path; ``unmatched`` for a path no route has) and status.
* ``xlir_http_request_duration_seconds{endpoint,method}``: latency histogram per route.
* ``xlir_search_duration_seconds{channels}``: whole-search latency per channel combination (``bm25``,
  ``bm25+dense``, ``bm25+rerank``, ...).
* ``xlir_channel_search_duration_seconds{channel}``: the time each channel's searcher took within a search
  (reported by the :class:`xlir.retrieval.searcher.Searcher` through its ``channel_timer``).
* ``xlir_index_updates_total{operation}``, ``xlir_index_documents``: updates applied and index size.
* ``process_*`` (CPU seconds, resident and virtual memory, open file descriptors, start time) and
  ``python_gc_*`` / ``python_info``: from prometheus-client's default collectors.

**Several worker processes** (gunicorn with uvicorn workers, or several ``xlir serve`` behind one balancer):
set ``PROMETHEUS_MULTIPROC_DIR`` to an *empty*, writable directory shared by the workers before they start
(wipe it between runs). Each process then writes its samples there and ``/metrics``, whichever worker
answers, reports the sum over all of them (prometheus-client's multiprocess mode). In that mode the
``process_*`` and ``python_*`` series and ``xlir_index_documents`` describe the worker that answered the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from xlir.errors import UserError

#: Histogram bucket upper bounds in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The environment variable that turns on multiprocess mode (prometheus-client's own name).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsConfigError(UserError, ValueError):
    """``PROMETHEUS_MULTIPROC_DIR`` is set but cannot be used."""


def multiprocess_dir() -> str | None:
    """The multiprocess directory when that mode is on, else None; :class:`MetricsConfigError` if unusable."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    if not os.path.isdir(path) or not os.access(path, os.W_OK):
        raise MetricsConfigError(
            f"{MULTIPROC_ENV}={path} is not a writable directory: create it (empty) before starting the "
            "workers, or unset it to serve one process"
        )
    if values.ValueClass is values.MutexValue:  # prometheus_client was imported before the variable was set
        raise MetricsConfigError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported in this process; set it in the "
            "environment the server starts with"
        )
    return path


class _IndexSize(Collector):
    def __init__(self, documents: Callable[[], int | None]) -> None:
        self.documents = documents

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = self.documents()
        if count is not None:
            yield GaugeMetricFamily("xlir_index_documents", "Documents in the served index.", value=count)


class Metrics:
    """The service's counters and histograms (thread-safe), and their exposition for ``GET /metrics``.

    One process: each ``Metrics`` has its own registry (so several apps in one process do not collide).
    With ``PROMETHEUS_MULTIPROC_DIR`` set: samples go to that directory and :meth:`exposition` reads them
    all back (see the module docstring).
    """

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess_dir()
        # In multiprocess mode the metric objects register nowhere: their values live in the directory.
        own = None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        self._registry = own
        self.documents: Callable[[], int | None] = lambda: None
        self._requests = Counter(
            "xlir_http_requests",
            "HTTP requests served, by route template, method and status.",
            ["endpoint", "method", "status"],
            registry=own,
        )
        self._request_latency = Histogram(
            "xlir_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["endpoint", "method"],
            buckets=BUCKETS,
            registry=own,
        )
        self._search_latency = Histogram(
            "xlir_search_duration_seconds",
            "Search latency by channel combination (fusion and reranking included).",
            ["channels"],
            buckets=BUCKETS,
            registry=own,
        )
        self._channel_latency = Histogram(
            "xlir_channel_search_duration_seconds",
            "Time one channel's searcher took within a search, by channel.",
            ["channel"],
            buckets=BUCKETS,
            registry=own,
        )
        self._updates = Counter(
            "xlir_index_updates",
            "Index update batches applied, by operation.",
            ["operation"],
            registry=own,
        )
        if own is not None:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                own.register(_Forward(collector))
            own.register(_IndexSize(lambda: self.documents()))

    # -- observations ----------------------------------------------------------------------------------

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(endpoint, method, str(status)).inc()
        self._request_latency.labels(endpoint, method).observe(seconds)

    def observe_search(self, channels: list[str], seconds: float) -> None:
        self._search_latency.labels("+".join(channels)).observe(seconds)

    def observe_channel(self, channel: str, seconds: float) -> None:
        self._channel_latency.labels(channel).observe(seconds)

    def observe_update(self, operation: str) -> None:
        self._updates.labels(operation).inc()

    # -- exposition ------------------------------------------------------------------------------------

    def registry(self) -> CollectorRegistry:
        """What a scrape reads: this process's registry, or (multiprocess) every worker's samples."""
        if self._registry is not None:
            return self._registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(_Forward(collector))
        registry.register(_IndexSize(lambda: self.documents()))
        return registry

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type (OpenMetrics when ``accept`` asks for it, else Prometheus text)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry()), content_type


class _Forward(Collector):
    """A default collector (process, platform, GC) added to a private registry without re-registering it."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Any:
        return self.collector.collect()
