"""Prometheus metrics of the search service, written in the plain-text exposition format (no client library).

* ``xlir_http_requests_total{endpoint,method,status}``: requests served, by route template and status.
* ``xlir_http_request_duration_seconds{endpoint}``: latency histogram per route.
* ``xlir_search_duration_seconds{channels}``: search latency histogram per channel combination
  (``bm25``, ``bm25+dense``, ...).
* ``xlir_index_updates_total{operation}``, ``xlir_index_documents``: updates applied and index size.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

#: Histogram bucket upper bounds in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    __slots__ = ("counts", "total", "count")

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.counts[index] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    """Thread-safe counters and histograms, rendered by :meth:`render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._request_latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self._search_latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self._updates: dict[str, int] = defaultdict(int)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, method, str(status))] += 1
            self._request_latency[endpoint].observe(seconds)

    def observe_search(self, channels: list[str], seconds: float) -> None:
        with self._lock:
            self._search_latency["+".join(channels)].observe(seconds)

    def observe_update(self, operation: str) -> None:
        with self._lock:
            self._updates[operation] += 1

    def render(self, documents: int | None = None) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            lines += [
                "# HELP xlir_http_requests_total HTTP requests served, by route, method and status.",
                "# TYPE xlir_http_requests_total counter",
            ]
            for (endpoint, method, status), value in sorted(self._requests.items()):
                labels = _labels(endpoint=endpoint, method=method, status=status)
                lines.append(f"xlir_http_requests_total{labels} {value}")
            _histogram(
                lines,
                "xlir_http_request_duration_seconds",
                "HTTP request latency by route.",
                "endpoint",
                self._request_latency,
            )
            _histogram(
                lines,
                "xlir_search_duration_seconds",
                "Search latency by channel combination.",
                "channels",
                self._search_latency,
            )
            lines += [
                "# HELP xlir_index_updates_total Index update batches applied, by operation.",
                "# TYPE xlir_index_updates_total counter",
            ]
            for operation, value in sorted(self._updates.items()):
                lines.append(f"xlir_index_updates_total{_labels(operation=operation)} {value}")
        if documents is not None:
            lines += [
                "# HELP xlir_index_documents Documents in the served index.",
                "# TYPE xlir_index_documents gauge",
                f"xlir_index_documents {documents}",
            ]
        return "\n".join(lines) + "\n"


def _histogram(
    lines: list[str], name: str, help_text: str, label: str, series: dict[str, _Histogram]
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for value, hist in sorted(series.items()):
        cumulative = 0
        for bound, count in zip(BUCKETS, hist.counts, strict=True):
            cumulative += count
            lines.append(f"{name}_bucket{_labels(**{label: value, 'le': repr(bound)})} {cumulative}")
        lines.append(f"{name}_bucket{_labels(**{label: value, 'le': '+Inf'})} {hist.count}")
        lines.append(f"{name}_sum{_labels(**{label: value})} {hist.total:.6f}")
        lines.append(f"{name}_count{_labels(**{label: value})} {hist.count}")


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{key}="{escape(str(value))}"' for key, value in labels.items()) + "}"
