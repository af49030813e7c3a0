"""Readers follow the newest committed state (issue 20, item 4): two real `xlir serve` processes on one
BM25-only index, a write through one seen by the other within 2 s, a rebuild seen by a running server
within 2 s, and ``/readyz`` naming the (build id, generation) served.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import write_jsonl
from served import start, stop, wait_ready
from small_corpora import V1, V2, documents

from xlir.indexing.builder import build_index
from xlir.indexing.manifest import MANIFEST_NAME, Manifest

XLIR = [sys.executable, "-m", "xlir.cli"]
KEY = "follow-test-key"
TIMEOUT = 180
#: the bar: a committed change is served by every server within this many seconds
FOLLOW_S = 2.0


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """Servers A and B on one BM25-only index (built from V1)."""
    target = tmp_path_factory.mktemp("follow") / "idx"
    build_index(documents(V1), target)
    started = [start(target, {"XLIR_API_KEY": KEY}), start(target, {"XLIR_API_KEY": KEY})]
    try:
        for process, url in started:
            wait_ready(process, url)
        yield started[0][1], started[1][1], target
    finally:
        stop(*(process for process, _ in started))


def _ready(url: str) -> dict:
    response = httpx.get(f"{url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _hit_ids(url: str, q: str) -> set[str]:
    response = httpx.get(f"{url}/search", params={"q": q, "k": 10}, timeout=10)
    assert response.status_code == 200, response.text
    return {hit["id"] for hit in response.json()["hits"]}


def _within(seconds: float, check, what: str) -> float:
    """Poll ``check`` until it holds; fail if that takes over ``seconds``. Returns the time it took."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def _write(url: str, method: str, path: str, body: dict | None = None) -> dict:
    response = httpx.request(method, f"{url}{path}", json=body, headers={"X-API-Key": KEY}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_write_through_one_server_is_served_by_the_other_within_two_seconds(
    two_servers: tuple[str, str, Path],
) -> None:
    a, b, target = two_servers
    before = _ready(a)
    assert before["build_id"] == Manifest.read(target).build_id and before["generation"] == 1
    assert _ready(b)["generation"] == 1 and before["status"] == "ready"
    assert "v1-en-0" in _hit_ids(a, "lighthouse ships")
    assert httpx.get(f"{a}/documents/v1-en-0", timeout=10).status_code == 200

    _write(b, "DELETE", "/documents/v1-en-0")
    assert _ready(b)["generation"] == 2  # the writer serves its own commit at once
    _within(
        FOLLOW_S,
        lambda: (
            "v1-en-0" not in _hit_ids(a, "lighthouse ships")
            and httpx.get(f"{a}/documents/v1-en-0", timeout=10).status_code == 404
        ),
        "A still returns the document B deleted",
    )
    ready = _ready(a)
    assert ready["generation"] == 2 and ready["build_id"] == before["build_id"] and ready["documents"] == 2

    # every committed batch is one generation, on disk and in both servers
    for generation, doc in enumerate(
        (
            {"id": "n-1", "text": "a storm over the harbour", "lang": "en"},
            {"id": "n-2", "text": "a storm at sea", "lang": "en"},
        ),
        start=3,
    ):
        _write(b, "POST", "/documents", {"documents": [doc]})
        assert Manifest.read(target).generation == generation
        _within(
            FOLLOW_S,
            lambda generation=generation: _ready(a)["generation"] == generation,
            f"A at generation {generation}",
        )
        assert doc["id"] in _hit_ids(a, "storm")
        assert httpx.get(f"{a}/documents/{doc['id']}", timeout=10).status_code == 200
    # a write through A is seen by B the same way
    _write(a, "DELETE", "/documents/n-2")
    _within(FOLLOW_S, lambda: _ready(b)["generation"] == 5, "B at generation 5")
    assert httpx.get(f"{b}/documents/n-2", timeout=10).status_code == 404
    assert "n-2" not in _hit_ids(b, "storm")


def test_a_rebuild_under_a_running_server_is_served_within_two_seconds(
    two_servers: tuple[str, str, Path], tmp_path: Path
) -> None:
    a, b, target = two_servers
    old = _ready(a)["build_id"]
    corpus = write_jsonl(tmp_path / "v2.jsonl", V2)
    done = subprocess.run(
        [*XLIR, "index", "build", str(corpus), str(target), "-c", "bm25", "--overwrite"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    new = Manifest.read(target)
    assert new.build_id != old and new.generation == 1
    for url in (a, b):
        _within(FOLLOW_S, lambda url=url: _ready(url)["build_id"] == new.build_id, f"{url} on the new build")
        ready = _ready(url)
        assert ready["generation"] == 1 and ready["documents"] == 3 and ready["status"] == "ready"
        assert "v2-en-1" in _hit_ids(url, "apple cider orchard")
        assert httpx.get(f"{url}/documents/v1-en-1", timeout=10).status_code == 404
        assert httpx.get(f"{url}/documents/v2-fr-0", timeout=10).status_code == 200
    _write(b, "POST", "/documents", {"documents": [{"id": "late", "text": "an apple tart", "lang": "en"}]})
    assert Manifest.read(target).state == (new.build_id, 2)
    _within(FOLLOW_S, lambda: "late" in _hit_ids(a, "apple tart"), "A finds B's write to the new build")


def test_a_manifest_without_a_generation_reads_as_zero(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    built = build_index(documents(V1), target)
    assert built.generation == 1 and Manifest.read(target).state == (built.build_id, 1)
    data = json.loads((target / MANIFEST_NAME).read_text(encoding="utf-8"))
    del data["generation"]
    (target / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    assert Manifest.read(target).generation == 0
    assert Manifest.peek_state(target) == (built.build_id, 0)
    assert Manifest.peek_state(tmp_path / "nothing") is None


def test_a_newer_state_that_does_not_open_leaves_the_older_one_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from xlir.server import service
    from xlir.server.app import create_app

    monkeypatch.setattr(service, "FOLLOW_INTERVAL_S", 0)  # no thread: follow() is called here
    monkeypatch.setattr(service, "RETRY_S", 0)
    target = tmp_path / "private-folder" / "idx"
    built = build_index(documents(V1), target)
    app = create_app(target)
    with TestClient(app) as client:
        index = app.state.index
        assert index.follow() is False  # nothing changed
        # a "commit" whose state cannot be opened: no document store
        store = target / "docs.sqlite"
        store.rename(tmp_path / "aside.sqlite")
        manifest = Manifest.read(target)
        manifest.generation += 1
        manifest.write(target)
        assert index.follow() is False
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "stale" and body["generation"] == 1 and body["build_id"] == built.build_id
        assert "document store" in body["reload_error"] and "private-folder" not in body["reload_error"]
        search = client.get("/search", params={"q": "lighthouse"})
        assert search.status_code == 200 and search.json()["hits"], search.text
        # once it opens, it is served
        (tmp_path / "aside.sqlite").rename(store)
        assert index.follow() is True
        body = client.get("/readyz").json()
        assert body["status"] == "ready" and body["generation"] == 2 and body["reload_error"] is None
