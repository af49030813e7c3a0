"""The search service over a real uvicorn server (127.0.0.1, free port) and a real BM25 index of the sample."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings
from served import free_port, wait_ready

from xlir.retrieval.query import MAX_QUERY_CHARS
from xlir.server.app import create_app
from xlir.server.snippets import query_terms, snippet

KEY = "test-key-123"
BODY_LIMIT = 256 * 1024
QUESTION = "How many points did the Panthers defense surrender?"


class _Server:
    """A uvicorn server running ``app`` in a background thread."""

    def __init__(self, app: object) -> None:
        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def index_dir(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the sample index: these tests update it."""
    copy = tmp_path_factory.mktemp("server") / "index"
    shutil.copytree(sample_index, copy)
    return copy


@pytest.fixture(scope="module")
def base_url(index_dir: Path) -> Iterator[str]:
    with _Server(create_app(index_dir, api_key=KEY, max_body_bytes=BODY_LIMIT)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]


# -- operations -------------------------------------------------------------------------------------


def test_health_readiness_and_page(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["channels"] == ["bm25"] and ready["documents"] >= 288
    assert ready["languages"]["zh"] == 48 and ready["writes_enabled"] and ready["updatable"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "http" not in page.text.split("<script>")[0]
    schema = client.get("/openapi.json").json()
    assert {"/search", "/documents", "/documents/{doc_id}", "/healthz", "/readyz", "/metrics"} <= set(
        schema["paths"]
    )


def test_metrics_count_requests_and_time_searches(client: httpx.Client) -> None:
    client.get("/search", params={"q": "Panthers"})
    client.get("/search", params={"q": "Panthers", "k": 0})
    client.get("/documents/no-such-document")
    client.get("/no/such/route")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples['xlir_http_requests_total{endpoint="/search",method="GET",status="200"}'] >= 1
    assert samples['xlir_http_requests_total{endpoint="/search",method="GET",status="422"}'] >= 1
    # labels are route templates (as in the OpenAPI paths), never raw paths
    assert samples['xlir_http_requests_total{endpoint="/documents/{doc_id}",method="GET",status="404"}'] >= 1
    assert samples['xlir_http_requests_total{endpoint="unmatched",method="GET",status="404"}'] >= 1
    assert not any("no-such-document" in name or "/no/such" in name for name in samples)
    assert samples['xlir_http_request_duration_seconds_count{endpoint="/search",method="GET"}'] >= 2
    assert "# TYPE xlir_http_request_duration_seconds histogram" in response.text
    assert "# TYPE xlir_search_duration_seconds histogram" in response.text
    assert samples['xlir_search_duration_seconds_bucket{channels="bm25",le="+Inf"}'] >= 1
    # each channel's own time within a search
    assert samples['xlir_channel_search_duration_seconds_count{channel="bm25"}'] >= 1
    assert samples['xlir_channel_search_duration_seconds_sum{channel="bm25"}'] > 0
    assert samples["xlir_index_documents"] >= 288
    # process metrics
    assert samples["process_resident_memory_bytes"] > 0 and "process_cpu_seconds_total" in samples
    assert "process_open_fds" in samples and "python_info" in {name.split("{")[0] for name in samples}
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def _samples(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value} (labels in their exposed order)."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_of_several_worker_processes_add_up(index_dir: Path, tmp_path: Path) -> None:
    """Two real `xlir serve` processes share PROMETHEUS_MULTIPROC_DIR: either one's /metrics counts both."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    ports = [free_port(), free_port()]
    workers = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "xlir"), "serve", str(index_dir), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, worker in zip(urls, workers, strict=True):
            wait_ready(worker, url)
        for url in urls:
            assert httpx.get(f"{url}/search", params={"q": "Panthers"}, timeout=30).status_code == 200
        httpx.get(f"{urls[0]}/search", params={"q": "Panthers"}, timeout=30)
        for url in urls:
            samples = _samples(httpx.get(f"{url}/metrics", timeout=30).text)
            assert samples['xlir_http_requests_total{endpoint="/search",method="GET",status="200"}'] == 3
            assert samples['xlir_channel_search_duration_seconds_count{channel="bm25"}'] == 3
            assert samples["xlir_index_documents"] >= 288 and samples["process_resident_memory_bytes"] > 0
        assert len(list(shared.glob("*.db"))) >= 2  # one set of sample files per process
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=20)


def test_an_unusable_multiprocess_directory_is_a_user_error(index_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(missing)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "xlir"), "serve", str(index_dir), "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr + done.stdout


def test_api_docs_are_served_from_bundled_assets(client: httpx.Client) -> None:
    """/docs and /redoc load only from this server: every script, style and icon they name is served here."""
    for page, expected in (("/docs", "SwaggerUIBundle"), ("/redoc", "<redoc")):
        response = client.get(page)
        assert response.status_code == 200 and expected in response.text
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert not re.findall(r"https?://", response.text), f"{page} names an outside URL"
        assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert assets and all(asset.startswith("/") for asset in assets)
        for asset in assets:
            fetched = client.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert b"cdn.redoc.ly" not in client.get("/docs-assets/redoc.standalone.js").content  # its menu's logo
    assert "/docs-assets" not in client.get("/openapi.json").json()["paths"]


# -- search -----------------------------------------------------------------------------------------


def test_search_get_and_post_agree_and_highlight(client: httpx.Client) -> None:
    got = client.get("/search", params={"q": QUESTION, "k": 5, "langs": "en"}).json()
    posted = client.post("/search", json={"q": QUESTION, "k": 5, "langs": ["en"]}).json()
    assert [h["id"] for h in got["hits"]] == [h["id"] for h in posted["hits"]]
    top = got["hits"][0]
    assert top["id"] == "en-a00p00" and top["language"] == "en" and top["rank"] == 1
    assert "<mark>Panthers</mark>" in top["snippet"] and "<mark>defense</mark>" in top["snippet"]
    assert "<mark>the</mark>" not in top["snippet"].lower()
    assert got["query_lang"] == "en" and got["channels"] == ["bm25"] and got["fusion"] is None
    assert top["explain"] is None


def test_cross_lingual_filters_accept_any_code_form(client: httpx.Client) -> None:
    result = client.get(
        "/search", params={"q": "Panthers Kawann Short", "langs": ["deu", "zh-Hans"], "k": 20}
    )
    body = result.json()
    assert body["langs"] == ["de", "zh"]
    assert {h["language"] for h in body["hits"]} <= {"de", "zh"} and body["hits"][0]["id"] == "de-a00p00"


def test_cjk_snippets_highlight_bigrams(client: httpx.Client) -> None:
    body = client.get("/search", params={"q": "黑豹队的防守", "langs": "zh", "k": 1}).json()
    assert body["query_lang"] == "zh"
    assert "<mark>黑豹队的防守</mark>" in body["hits"][0]["snippet"]
    words, grams = query_terms("ทีมแพนเทอร์ส ชนะ")
    assert "ทีม" not in words and "ที" in grams and "ชน" in grams
    assert "<mark>" in snippet("ทีมแพนเทอร์สชนะการแข่งขัน", (words, grams))


def test_snippets_escape_html() -> None:
    html_text = snippet("<script>alert('Panthers')</script> & more", query_terms("Panthers"))
    assert html_text == "&lt;script&gt;alert(&#x27;<mark>Panthers</mark>&#x27;)&lt;/script&gt; &amp; more"


def test_pagination_continues_the_ranking(client: httpx.Client) -> None:
    whole = client.get("/search", params={"q": "city university war year new team first", "k": 10}).json()[
        "hits"
    ]
    first = client.get("/search", params={"q": "city university war year new team first", "k": 5}).json()
    second = client.get(
        "/search", params={"q": "city university war year new team first", "k": 5, "offset": 5}
    ).json()
    assert first["has_more"] and second["offset"] == 5
    assert [h["id"] for h in first["hits"] + second["hits"]] == [h["id"] for h in whole]
    assert [h["rank"] for h in second["hits"]] == [6, 7, 8, 9, 10]
    far = client.get(
        "/search", params={"q": "city university war year new team first", "k": 10, "offset": 1000}
    ).json()
    assert far["hits"] == [] and not far["has_more"]


def test_explain_and_fusion(client: httpx.Client) -> None:
    body = client.post("/search", json={"q": "Panthers", "k": 3, "explain": True, "fusion": "minmax"}).json()
    assert body["hits"][0]["explain"] == {"bm25": {"rank": 1, "score": body["hits"][0]["score"]}}
    assert body["reranked"] is False and body["notices"] == []
    body = client.get("/search", params={"q": "Panthers", "weights": "bm25:2", "fusion": "zscore"})
    assert body.status_code == 200


def test_rerank_with_the_shipped_reranker_and_its_time_budget(client: httpx.Client) -> None:
    """rerank=true rescores the first-stage top rerank_k with the real shipped reranker; budget 0 falls back."""
    first = client.post("/search", json={"q": QUESTION, "k": 5, "explain": True}).json()
    body = client.post(
        "/search", json={"q": QUESTION, "k": 5, "explain": True, "rerank": True, "rerank_k": 5}
    ).json()
    assert body["reranked"] is True and body["notices"] == []
    assert sorted(h["id"] for h in body["hits"]) == sorted(h["id"] for h in first["hits"])
    # hits come in the order of the reranker's score interpolated with the first stage's (the weight
    # chosen at training); each carries the reranker's own rank and score beside the channels' evidence
    assert [h["score"] for h in body["hits"]] == sorted((h["score"] for h in body["hits"]), reverse=True)
    own = sorted(body["hits"], key=lambda h: h["explain"]["rerank"]["rank"])
    assert [h["explain"]["rerank"]["rank"] for h in own] == [1, 2, 3, 4, 5]
    own_scores = [h["explain"]["rerank"]["score"] for h in own]
    assert own_scores == sorted(own_scores, reverse=True)
    assert all("bm25" in h["explain"] for h in body["hits"]), "first-stage evidence is kept"
    cut = client.get(
        "/search", params={"q": QUESTION, "k": 5, "rerank": "true", "rerank_k": 5, "rerank_budget_ms": 0}
    ).json()
    assert cut["reranked"] is False and "time budget (0 ms) ran out" in cut["notices"][0]
    assert [h["id"] for h in cut["hits"]] == [h["id"] for h in first["hits"]], "first-stage order kept"


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"q": ""}, 422, "at least 1 character"),
        ({"q": "   "}, 400, "query is empty"),
        ({"q": "x" * (MAX_QUERY_CHARS + 1)}, 422, f"at most {MAX_QUERY_CHARS} characters"),
        ({}, 422, "q: Field required"),
        ({"q": "Panthers", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ({"q": "Panthers", "k": 101}, 422, "less than or equal to 100"),
        ({"q": "Panthers", "k": "ten"}, 422, "valid integer"),
        ({"q": "Panthers", "offset": -1}, 422, "offset"),
        ({"q": "Panthers", "offset": 1001}, 422, "offset"),
        ({"q": "Panthers", "langs": "fr"}, 400, "no documents in language(s) ['fr']"),
        ({"q": "Panthers", "langs": "klingon!"}, 400, "invalid language code"),
        ({"q": "Panthers", "channels": "dense"}, 400, "unknown channel(s) ['dense']"),
        ({"q": "Panthers", "fusion": "borda"}, 422, "fusion"),
        ({"q": "Panthers", "weights": "bm25"}, 400, "channel:number"),
        ({"q": "Panthers", "weights": "dense:1", "fusion": "minmax"}, 400, "not searched"),
        ({"q": "Panthers", "weights": "bm25:1"}, 400, "not 'rrf'"),
        ({"q": "Panthers", "rerank": "true", "rerank_k": 0}, 422, "rerank_k"),
        ({"q": "Panthers", "rerank": "true", "rerank_budget_ms": -5}, 422, "rerank_budget_ms"),
    ],
)
def test_bad_search_input_is_a_4xx_that_says_why(
    client: httpx.Client, params: dict, status: int, message: str
) -> None:
    assert message in _error(client.get("/search", params=params), status)


def test_bad_bodies(client: httpx.Client) -> None:
    bad_json = client.post(
        "/search", content=b'{"q": "Panthers",', headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in _error(bad_json, 400)
    not_object = client.post("/search", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert "JSON object" in _error(not_object, 422)
    unknown_field = client.post("/search", json={"q": "Panthers", "colour": "red"})
    assert "colour" in _error(unknown_field, 422)
    huge = client.post(
        "/search", content=b" " * (BODY_LIMIT + 1), headers={"Content-Type": "application/json"}
    )
    assert "over 262,144 bytes" in _error(huge, 413)
    assert "see /docs" in _error(client.get("/nowhere"), 404)
    assert "not allowed" in _error(client.put("/search"), 405)


def test_any_user_error_is_answered_with_its_status_and_message() -> None:
    """The one handler: a UserError raised anywhere below a route is its http_status and {"error": message}."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from xlir.errors import ConflictError, NotFoundError, UserError
    from xlir.indexing.errors import IndexDamagedError
    from xlir.server.auth import AuthError
    from xlir.server.errors import add_error_handlers

    raised = {
        "plain": (UserError("the input is wrong; fix it"), 400),
        "missing": (NotFoundError("no such thing; check the name"), 404),
        "conflict": (ConflictError("cannot do that now"), 409),
        "damaged": (IndexDamagedError("the index is damaged; rebuild it"), 503),
        "auth": (AuthError(401, "this endpoint needs the API key"), 401),
    }
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/raise/{name}")
    def raise_it(name: str) -> None:
        raise raised[name][0]

    with TestClient(app) as client:
        for name, (error, status) in raised.items():
            response = client.get(f"/raise/{name}")
            assert (response.status_code, response.json()) == (status, {"error": str(error)})
            assert response.headers.get("www-authenticate") == ("Bearer" if status == 401 else None)


# -- documents and updates --------------------------------------------------------------------------


def test_get_document(client: httpx.Client) -> None:
    doc = client.get("/documents/de-a00p00").json()
    assert doc["lang"] == "de" and doc["text"].startswith("Die Verteidigung der Panthers")
    assert "no document with id 'nope'" in _error(client.get("/documents/nope"), 404)


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "needs the API key"),
        ({"Authorization": "Bearer wrong"}, 401, "wrong"),
        ({"X-API-Key": "wrong"}, 401, "wrong"),
        ({"Authorization": "Basic abc"}, 401, "needs the API key"),
    ],
)
def test_writes_need_the_key(client: httpx.Client, headers: dict, status: int, message: str) -> None:
    batch = {"documents": [{"id": "x", "text": "y"}]}
    response = client.post("/documents", json=batch, headers=headers)
    assert message in _error(response, status)
    assert response.headers.get("www-authenticate") == "Bearer"
    assert message in _error(client.delete("/documents/de-a00p00", headers=headers), status)
    assert client.get("/documents/x").status_code == 404


def test_writes_are_disabled_without_a_configured_key(
    index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XLIR_API_KEY", raising=False)
    with _Server(create_app(index_dir)) as url:
        response = httpx.post(f"{url}/documents", json={"documents": [{"id": "x", "text": "y"}]})
        assert "XLIR_API_KEY" in _error(response, 403)
        assert httpx.get(f"{url}/readyz").json()["writes_enabled"] is False


def test_added_documents_are_found_and_deleted_ones_are_gone(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    batch = {
        "documents": [
            {"id": "new-1", "text": "Zanzibar marmalade <b>recipe</b> with Panthers", "lang": "eng",
             "title": "Marmalade", "metadata": {"source": "test"}},
            {"id": "new-2", "text": "Sansibar Marmelade Rezept", "lang": "de"},
        ]
    }  # fmt: skip
    report = client.post("/documents", json=batch, headers=auth).json()
    assert (report["operation"], report["added"], report["replaced"]) == ("upsert", 2, 0)
    hits = client.get("/search", params={"q": "Zanzibar marmalade"}).json()["hits"]
    assert (
        hits[0]["id"] == "new-1"
        and hits[0]["title"] == "Marmalade"
        and hits[0]["metadata"] == {"source": "test"}
    )
    assert "&lt;b&gt;recipe&lt;/b&gt;" in hits[0]["snippet"]
    assert client.get("/documents/new-1").json()["lang"] == "en"
    replaced = client.post(
        "/documents", json={"documents": [{"id": "new-1", "text": "Quokka sandwiches", "lang": "en"}]},
        headers={"X-API-Key": KEY},
    ).json()  # fmt: skip
    assert replaced["replaced"] == 1
    assert client.get("/search", params={"q": "Zanzibar marmalade", "langs": "en"}).json()["hits"] == []
    assert client.get("/search", params={"q": "quokka"}).json()["hits"][0]["id"] == "new-1"
    for docid in ("new-1", "new-2"):
        assert client.delete(f"/documents/{docid}", headers=auth).json()["deleted"] == 1
    assert client.get("/search", params={"q": "quokka Sansibar"}).json()["hits"] == []
    assert client.get("/documents/new-1").status_code == 404
    assert "nothing to delete" in _error(client.delete("/documents/new-1", headers=auth), 404)
    assert client.get("/readyz").json()["documents"] == 288


@pytest.mark.parametrize(
    ("batch", "status", "message"),
    [
        ({"documents": []}, 422, "at least 1 item"),
        ({"documents": [{"id": "a", "text": ""}]}, 422, "text"),
        ({"documents": [{"id": "a", "text": "   "}]}, 400, "text is empty"),
        ({"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, 400, "twice"),
        ({"documents": [{"id": "a", "text": "x", "lang": "zz-not"}]}, 400, "invalid language code"),
        ({"docs": []}, 422, "documents"),
    ],
)
def test_bad_batches_are_refused(client: httpx.Client, batch: dict, status: int, message: str) -> None:
    assert message in _error(client.post("/documents", json=batch, headers={"X-API-Key": KEY}), status)


def test_searches_never_see_half_a_batch(client: httpx.Client, base_url: str) -> None:
    """Each batch writes the same marker into 3 documents: a search must see 0 or 3 of them."""
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def searching() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as own:
            while not stop.is_set():
                response = own.get("/search", params={"q": "wombatmarker", "k": 10})
                if response.status_code != 200:
                    errors.append(response.text)
                else:
                    seen.append(len(response.json()["hits"]))

    threads = [threading.Thread(target=searching) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(4):
            text = "wombatmarker" if round_ % 2 == 0 else "something else entirely"
            docs = [{"id": f"atomic-{i}", "text": f"{text} {i}", "lang": "en"} for i in range(3)]
            assert client.post("/documents", json={"documents": docs}, headers={"X-API-Key": KEY}).is_success
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert seen and set(seen) <= {0, 3}


# -- schema-driven fuzzing --------------------------------------------------------------------------


def test_no_generated_request_makes_the_server_fail(base_url: str) -> None:
    """schemathesis: requests generated from /openapi.json (valid and invalid) for every operation, never 5xx."""
    schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]' (schemathesis)")
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    statuses: list[int] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def no_server_error(case: object) -> None:
                response = case.call_and_validate(checks=[not_a_server_error], timeout=30)
                statuses.append(response.status_code)

            try:
                no_server_error()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE
    assert len(statuses) >= 8 * 2 * 3 and max(statuses) < 500
    assert {200, 422} <= set(statuses)
