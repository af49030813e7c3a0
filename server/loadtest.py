"""Load test of the search service: ``python -m xlir.server.loadtest``.

Starts the server on an index in a child process on 127.0.0.1 (``--index DIR``), or targets a running one
(``--url``), and runs N concurrent clients (default 50) from this process: each client sends searches
(queries from the shared layout, e.g. every XQuAD question in every language) until ``--requests`` are
done or ``--duration`` has passed. Reports p50/p95/p99 latency, throughput and errors per channel
combination (each channel alone, then all together).

``--updates`` also streams document batches while searching and checks consistency: each batch
rewrites the same ``--batch-size`` documents with a new generation token, and concurrent searches for
the documents' common token must see all of them, all of one generation (the state before or after a
whole batch). The documents are deleted again at the end. Writes need the key: with ``--index`` a
random key is given to the child server; with ``--url`` pass ``--api-key`` (or set XLIR_API_KEY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from xlir.models.paths import data_root

DEFAULT_QUERIES = data_root() / "xquad" / "queries"
MARKER = "lzconsistencymarker"


@dataclass
class Stats:
    """Latencies (seconds) and errors of one run."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append(message[:300])

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else float("nan")

        return {
            "name": self.name,
            "requests": len(lat) + self.errors,
            "errors": self.errors,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else float("nan"),
            "throughput_qps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "error_examples": self.error_examples,
        }


def load_queries(path: Path, limit: int | None = None) -> list[str]:
    """Query texts from a ``qid<TAB>text`` TSV file or every ``*.tsv`` in a directory."""
    files = sorted(path.glob("*.tsv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise SystemExit(f"no query files at {path}: give --queries a TSV file or a directory of them")
    queries = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            _, sep, text = line.partition("\t")
            if sep and text.strip():
                queries.append(text.strip())
    return queries[:limit] if limit else queries


async def _search_load(
    client: httpx.AsyncClient,
    queries: list[str],
    channels: list[str] | None,
    clients: int,
    requests: int,
    duration: float,
    k: int,
    stats: Stats,
) -> None:
    counter = iter(range(requests))
    deadline = time.monotonic() + duration

    async def worker() -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            body: dict[str, Any] = {"q": queries[i % len(queries)], "k": k}
            if channels:
                body["channels"] = channels
            started = time.perf_counter()
            try:
                response = await client.post("/search", json=body)
            except httpx.HTTPError as exc:
                stats.error(f"{type(exc).__name__} after {time.perf_counter() - started:.2f} s: {exc!r}")
                continue
            if response.status_code == 200:
                stats.latencies.append(time.perf_counter() - started)
            else:
                stats.error(f"{response.status_code}: {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    stats.seconds = time.perf_counter() - started


async def _consistency_load(
    client: httpx.AsyncClient,
    queries: list[str],
    clients: int,
    duration: float,
    batch_size: int,
    api_key: str,
    search_stats: Stats,
    update_stats: Stats,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    ids = [f"loadtest-{i}" for i in range(batch_size)]
    generation_of = re.compile(r"gen(\d+)x")
    checks = {"consistency_checks": 0, "violations": 0, "violation_examples": []}

    def batch(generation: int) -> dict[str, Any]:
        return {
            "documents": [
                {
                    "id": docid,
                    "lang": "en",
                    "text": f"{MARKER} gen{generation}x document {i} of the load test",
                }
                for i, docid in enumerate(ids)
            ]
        }

    first = await client.post("/documents", json=batch(0), headers=headers)
    if first.status_code != 200:
        raise SystemExit(f"the server refused updates ({first.status_code}): {first.text}")
    stop = asyncio.Event()

    async def writer() -> None:
        generation = 0
        while not stop.is_set():
            generation += 1
            started = time.perf_counter()
            response = await client.post("/documents", json=batch(generation), headers=headers)
            if response.status_code == 200:
                update_stats.latencies.append(time.perf_counter() - started)
            else:
                update_stats.error(f"{response.status_code}: {response.text}")
            await asyncio.sleep(0.01)

    async def checker() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post("/search", json={"q": MARKER, "k": 2 * batch_size, "langs": ["en"]})
            if response.status_code != 200:
                search_stats.error(f"{response.status_code}: {response.text}")
                continue
            search_stats.latencies.append(time.perf_counter() - started)
            hits = [h for h in response.json()["hits"] if h["id"].startswith("loadtest-")]
            generations = {m.group(1) for h in hits for m in [generation_of.search(h["snippet"])] if m}
            checks["consistency_checks"] += 1
            if len(hits) != batch_size or len(generations) != 1:
                checks["violations"] += 1
                if len(checks["violation_examples"]) < 5:
                    checks["violation_examples"].append(
                        {"hits": len(hits), "generations": sorted(generations)}
                    )

    async def searcher(offset: int) -> None:
        i = offset
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post("/search", json={"q": queries[i % len(queries)], "k": 10})
            if response.status_code == 200:
                search_stats.latencies.append(time.perf_counter() - started)
            else:
                search_stats.error(f"{response.status_code}: {response.text}")
            i += clients

    started = time.perf_counter()
    tasks = [asyncio.create_task(writer())]
    tasks += [asyncio.create_task(checker()) for _ in range(max(1, clients // 5))]
    tasks += [asyncio.create_task(searcher(i)) for i in range(clients - max(1, clients // 5))]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.gather(*tasks)
    search_stats.seconds = update_stats.seconds = time.perf_counter() - started
    for docid in ids:
        await client.delete(f"/documents/{docid}", headers=headers)
    return checks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(index: Path, api_key: str | None) -> tuple[subprocess.Popen, str]:
    """Serve ``index`` from a child process on a free port; returns it and its base URL once ready."""
    port = _free_port()
    env = dict(os.environ)
    if api_key:
        env["XLIR_API_KEY"] = api_key
    code = "import sys; from xlir.server.app import serve; serve(sys.argv[1], port=int(sys.argv[2]), log_level='warning')"
    process = subprocess.Popen([sys.executable, "-c", code, str(index), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode}; see its messages above")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("the server did not become ready within 120 s")


async def run(args: argparse.Namespace, url: str, api_key: str | None) -> dict[str, Any]:
    queries = load_queries(Path(args.queries), args.max_queries)
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        ready = (await client.get("/readyz")).json()
        channels = ready["channels"]
        combos = [c.split(",") for c in args.combos] if args.combos else [[c] for c in channels]
        if not args.combos and len(channels) > 1:
            combos.append(list(channels))
        report: dict[str, Any] = {
            "url": url,
            "documents": ready["documents"],
            "languages": len(ready["languages"]),
            "queries": len(queries),
            "clients": args.clients,
            "search": [],
        }
        # warm-up: JIT, fastText, caches
        await _search_load(client, queries, None, min(4, args.clients), 50, 30, args.k, Stats("warmup"))
        for combo in combos:
            stats = Stats("+".join(combo))
            await _search_load(
                client, queries, combo, args.clients, args.requests, args.duration, args.k, stats
            )
            report["search"].append(stats.summary())
        if args.updates:
            if not api_key:
                raise SystemExit("--updates needs the API key: --api-key or XLIR_API_KEY (or use --index)")
            search_stats, update_stats = Stats("search during updates"), Stats("update batches")
            checks = await _consistency_load(
                client,
                queries,
                args.clients,
                args.update_seconds,
                args.batch_size,
                api_key,
                search_stats,
                update_stats,
            )
            report["updates"] = {
                "batch_size": args.batch_size,
                "search": search_stats.summary(),
                "update": update_stats.summary(),
                **checks,
            }
    return report


def _print(report: dict[str, Any]) -> None:
    print(
        f"{report['url']}: {report['documents']:,} documents, {report['languages']} languages, "
        f"{report['queries']:,} queries, {report['clients']} clients"
    )
    rows = list(report["search"])
    if "updates" in report:
        rows += [report["updates"]["search"], report["updates"]["update"]]
    print(f"{'run':<24}{'requests':>9}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>8}")
    for row in rows:
        print(
            f"{row['name']:<24}{row['requests']:>9}{row['errors']:>8}{row['p50_ms']:>9}{row['p95_ms']:>9}"
            f"{row['p99_ms']:>9}{row['throughput_qps']:>8}"
        )
        for example in row["error_examples"]:
            print(f"    error: {example}")
    if "updates" in report:
        u = report["updates"]
        print(
            f"consistency: {u['consistency_checks']} checks, {u['violations']} violations "
            f"(batches of {u['batch_size']} documents) {u['violation_examples'] or ''}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xlir.server.loadtest", description=__doc__.split("\n\n")[0]
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--index", help="serve this index from a child process on 127.0.0.1")
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--queries", default=str(DEFAULT_QUERIES), help="a qid<TAB>text file or a directory of them"
    )
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5000, help="searches per channel combination")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="at most this many seconds per combination"
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--combos", nargs="*", help="channel combinations, e.g. bm25 bm25,dense (default: each+all)"
    )
    parser.add_argument(
        "--updates", action="store_true", help="stream updates while searching; check consistency"
    )
    parser.add_argument("--update-seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--api-key", default=os.environ.get("XLIR_API_KEY"))
    parser.add_argument("--json", help="also write the report here as JSON")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.batch_size < 1:
        parser.error("--clients, --requests and --batch-size must be at least 1")

    process = None
    api_key = args.api_key
    try:
        if args.index:
            api_key = api_key or secrets.token_urlsafe(16)
            process, url = start_server(Path(args.index), api_key if args.updates else None)
        else:
            url = args.url.rstrip("/")
        report = asyncio.run(run(args, url, api_key))
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    failed = any(r["errors"] for r in report["search"]) or report.get("updates", {}).get("violations", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
