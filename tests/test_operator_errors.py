"""What an operator meets when something is off: a bad corpus line, a duplicate id deep in a corpus, an
over-size chunked upload, an index that cannot be opened, two writer processes on one index."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import write_jsonl

from xlir.indexing.documents import CorpusError
from xlir.indexing.readers import ReadReport, open_corpus

XLIR = [sys.executable, "-m", "xlir.cli"]
#: `xlir serve`'s request body limit (DEFAULT_MAX_BODY_BYTES).
SERVE_LIMIT = 16 * 1024 * 1024


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*XLIR, *args], capture_output=True, text=True, env=env, timeout=300)


# -- a lone surrogate in a corpus --------------------------------------------------------------------

SURROGATE_LINES = [
    '{"id": "a", "text": "fine text", "lang": "en"}',
    '{"id": "b", "text": "broken \\ud800 here", "lang": "en"}',  # a lone high surrogate, escaped
    '{"id": "c", "text": "an emoji \\ud83d\\ude00 is a pair", "lang": "en"}',
    '{"id": "d", "text": "a literal backslash \\\\ud800 is text", "lang": "en"}',
    '{"id": "e", "text": "fine", "title": "low \\udc00 alone", "lang": "en"}',
    '{"id": "f", "text": "fine", "lang": "en", "tags": ["x", "\\udfff"]}',
]


def _surrogate_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "surrogates.jsonl"
    path.write_text("\n".join(SURROGATE_LINES) + "\n", encoding="ascii")
    return path


def test_a_lone_surrogate_is_a_corpus_error_with_file_and_line(tmp_path: Path) -> None:
    path = _surrogate_corpus(tmp_path)
    with pytest.raises(CorpusError) as info:
        list(open_corpus(path))
    assert info.value.reason == "invalid_unicode" and info.value.where == f"{path}:2"
    assert "\\ud800" in str(info.value) and "'text'" in str(info.value) and "skip" in info.value.hint

    report = ReadReport()
    docs = list(open_corpus(path, on_error="skip", report=report))
    assert [d.id for d in docs] == ["a", "c", "d"]
    assert docs[1].text == "an emoji \U0001f600 is a pair" and docs[2].text.endswith("\\ud800 is text")
    assert dict(report.skipped) == {"invalid_unicode": 3}
    assert [e.split(": ", 1)[0] for e in report.first_errors] == [f"{path}:{n}" for n in (2, 5, 6)]


def test_a_lone_surrogate_is_one_line_from_the_cli_and_skipped_into_the_manifest(tmp_path: Path) -> None:
    from xlir.indexing.builder import build_index
    from xlir.indexing.config import IndexConfig
    from xlir.indexing.manifest import Manifest

    path = _surrogate_corpus(tmp_path)
    stopped = _run("index", "build", str(path), str(tmp_path / "stopped"), "-c", "bm25")
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert stopped.stderr.strip().startswith(f"error: {path}:2: ") and "lone surrogate" in stopped.stderr

    report = ReadReport()
    manifest = build_index(
        open_corpus(path, on_error="skip", report=report),
        tmp_path / "skipped",
        IndexConfig(channels=("bm25",), on_error="skip"),
        skipped=report.skipped,
    )
    assert manifest.documents == 3 and manifest.skipped == {"invalid_unicode": 3}
    assert Manifest.read(tmp_path / "skipped").skipped == {"invalid_unicode": 3}


# -- a duplicate id deep in a corpus ------------------------------------------------------------------


def _rows(n: int, words: int = 4) -> list[dict]:
    return [
        {"id": f"d{i}", "text": " ".join(f"w{(i * 7 + j) % 101}" for j in range(words)), "lang": "en"}
        for i in range(n)
    ]


def test_a_corpus_finds_a_duplicate_id_in_one_pass_over_the_ids(tmp_path: Path) -> None:
    corpus = tmp_path / "collection" / "corpus"
    corpus.mkdir(parents=True)
    write_jsonl(corpus / "de.jsonl", [{"_id": "x1", "text": "eins", "lang": "de"}, *_rows(3)])
    write_jsonl(corpus / "en.jsonl", [*_rows(500)[3:], {"id": "x1", "text": "one", "lang": "en"}])
    documents = open_corpus(tmp_path / "collection")
    with pytest.raises(CorpusError) as info:
        documents.check_unique_ids()
    assert info.value.reason == "duplicate_id"
    assert info.value.where == f"{corpus / 'en.jsonl'}:498"
    assert f"first seen at {corpus / 'de.jsonl'}:1" in str(info.value)
    assert next(documents).id == "x1"  # reading is not changed: duplicates are the builder's to refuse
    # integer and string ids that read the same are the same id; lines that are themselves bad are the
    # reader's to report, in their turn
    rows = [
        {"id": 7, "text": "a"},
        {"id": "x", "text": ""},
        {"id": "x", "text": ""},
        {"id": "7", "text": "b"},
    ]
    ints = open_corpus(write_jsonl(tmp_path / "ints.jsonl", rows))
    with pytest.raises(
        CorpusError, match=r"ints.jsonl:4: duplicate document id '7' \(first seen at .*ints.jsonl:1\)"
    ):
        ints.check_unique_ids()
    unique = open_corpus(write_jsonl(tmp_path / "unique.jsonl", _rows(100)))
    assert unique.check_unique_ids() == 100  # the lines it read: a build's progress total, counted once


def test_a_build_stops_at_a_duplicate_id_before_any_batch_is_encoded(tmp_path: Path) -> None:
    """Today's reader streams; the builder encoded 2 batches (4,000 documents) before meeting line 4,001."""
    from xlir.indexing.builder import build_index
    from xlir.indexing.config import IndexConfig

    path = write_jsonl(tmp_path / "corpus.jsonl", [*_rows(4000), {"id": "d3", "text": "again", "lang": "en"}])
    batches: list[int] = []
    with pytest.raises(CorpusError) as info:
        build_index(
            open_corpus(path), tmp_path / "idx", IndexConfig(channels=("bm25",)), on_progress=batches.append
        )
    assert str(info.value).startswith(f"{path}:4001: duplicate document id 'd3' (first seen at {path}:4)")
    assert batches == [], "documents were handed to the channels before the duplicate was reported"
    assert not (tmp_path / "idx").exists() and not list(tmp_path.glob(".idx.tmp-*"))


def test_a_dense_build_reports_a_late_duplicate_within_seconds(tmp_path: Path) -> None:
    """4,000 documents before the duplicate: about 85 s of mE5-small encoding on 2 cores before the fix."""
    from xlir.models.registry import DEFAULT_MODEL, is_available

    if not is_available(DEFAULT_MODEL):
        pytest.skip(f"{DEFAULT_MODEL} is not prepared here (xlir models prepare)")
    path = write_jsonl(
        tmp_path / "corpus.jsonl", [*_rows(4000, words=40), {"id": "d0", "text": "again", "lang": "en"}]
    )
    started = time.monotonic()
    done = _run("index", "build", str(path), str(tmp_path / "idx"), "-c", "dense")
    seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert f"{path}:4001: duplicate document id 'd0' (first seen at {path}:1)" in done.stderr
    assert seconds < 30, f"the duplicate was reported after {seconds:.0f} s"


# -- a real `xlir serve`: over-size chunked bodies, no index path in any body ------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(index_dir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [*XLIR, "serve", str(index_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_answering(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            httpx.get(f"{url}/healthz", timeout=2)
            if httpx.get(f"{url}/readyz", timeout=5).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} never answered")


@pytest.fixture(scope="module")
def servers(
    sample_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, Path]]]:
    """Two real `xlir serve` processes: the sample index, and a copy that cannot be opened (no docstore)."""
    broken = tmp_path_factory.mktemp("private-folder-of-someone") / "broken-index"
    shutil.copytree(sample_index, broken)
    (broken / "docs.sqlite").unlink()
    started = {name: _serve(path) for name, path in (("good", sample_index), ("broken", broken))}
    try:
        for process, url in started.values():
            _wait_answering(url, process)
        yield {"good": (started["good"][1], sample_index), "broken": (started["broken"][1], broken)}
    finally:
        for process, _ in started.values():
            process.terminate()
            process.wait(timeout=30)


def _chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b" " * min(size, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.mark.parametrize("route", ["/search", "/documents"])
def test_a_chunked_body_over_the_limit_is_413(servers: dict[str, tuple[str, Path]], route: str) -> None:
    url, _ = servers["good"]
    with httpx.Client(timeout=60) as client:
        request = client.build_request(
            "POST",
            f"{url}{route}",
            content=_chunks(SERVE_LIMIT + 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers and request.headers["transfer-encoding"] == "chunked"
        response = client.send(request)
    assert response.status_code == 413, response.text
    assert f"over {SERVE_LIMIT:,} bytes" in response.json()["error"]
    # under the limit, a chunked body is read as usual
    parts = iter([b'{"q": "Pan', b'thers", "k": 1}'])
    small = httpx.post(
        f"{url}/search", content=parts, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert small.status_code == 200 and len(small.json()["hits"]) == 1, small.text


def test_readyz_and_503_bodies_name_the_index_never_its_path(servers: dict[str, tuple[str, Path]]) -> None:
    url, index_dir = servers["good"]
    ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["index"] == index_dir.name
    assert str(index_dir.parent) not in ready.text

    url, broken = servers["broken"]
    for response in (
        httpx.get(f"{url}/readyz", timeout=30),
        httpx.get(f"{url}/search", params={"q": "x"}, timeout=30),
    ):
        assert response.status_code == 503, response.text
        message = response.json()["error"]
        assert "broken-index" in message and "document store" in message
        assert str(broken.parent) not in message and "private-folder-of-someone" not in message


def test_paths_inside_the_index_are_shown_from_its_name_on(tmp_path: Path) -> None:
    from xlir.server.errors import without_index_path

    index_dir = tmp_path / "news"
    message = f"{index_dir}/docs.sqlite is damaged; rebuild {index_dir}"
    assert without_index_path(message, index_dir) == "news/docs.sqlite is damaged; rebuild news"
    assert without_index_path("nothing to hide", Path("news")) == "nothing to hide"


# -- per-language counts with two writer processes ----------------------------------------------------

WRITER = """
import sys
from xlir.indexing.documents import Document
from xlir.indexing.updater import IndexUpdater

index_dir, lang = sys.argv[1], sys.argv[2]
updater = IndexUpdater(index_dir, wait=True, timeout=120)
for batch in range(4):
    updater.upsert([Document(f"{lang}-new-{batch}-{i}", f"{lang} text {batch} {i}", lang) for i in range(3)])
"""


def test_two_writer_processes_leave_counts_that_match_the_docstore(
    sample_index: Path, tmp_path: Path
) -> None:
    from xlir.indexing.docstore import DocStore
    from xlir.indexing.manifest import Manifest

    index_dir = tmp_path / "index"
    shutil.copytree(sample_index, index_dir)
    before = Manifest.read(index_dir).languages
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index_dir), lang], stderr=subprocess.PIPE, text=True
        )
        for lang in ("de", "es")
    ]
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.communicate()[1]
    manifest = Manifest.read(index_dir)
    store = DocStore.in_directory(index_dir)
    try:
        counted, total = store.language_counts(), len(store)
    finally:
        store.close()
    assert manifest.languages == counted == {**before, "de": before["de"] + 12, "es": before["es"] + 12}
    assert manifest.documents == total == sum(before.values()) + 24
