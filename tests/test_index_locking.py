"""One writer per index (issue 20): real `xlir` processes, a real `xlir serve`, real SIGKILL.

Builds are BM25-only over a few made-up documents; a build is held at ``build:started`` (its lock taken,
its staging folder made) by ``XLIR_PAUSE=build:started=<gate file>`` until the test creates the gate.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import write_jsonl
from served import serving
from small_corpora import V1, V2, documents

from xlir.indexing.builder import build_index
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document
from xlir.indexing.locking import IndexLockedError, hold, holder
from xlir.indexing.manifest import Manifest
from xlir.indexing.updater import IndexUpdater
from xlir.retrieval.searcher import Searcher

XLIR = [sys.executable, "-m", "xlir.cli"]
KEY = "locking-test-key"
TIMEOUT = 180


@pytest.fixture()
def corpora(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "corpora"
    folder.mkdir()
    return {"v1": write_jsonl(folder / "v1.jsonl", V1), "v2": write_jsonl(folder / "v2.jsonl", V2)}


def _ids(index: Path) -> set[str]:
    store = DocStore.in_directory(index)
    try:
        return {doc.id for doc in store}
    finally:
        store.close()


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "300", **extra}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*XLIR, *args], capture_output=True, text=True, env=_env(**env), timeout=TIMEOUT)


def _held_build(corpus: Path, target: Path, gate: Path, *extra: str) -> subprocess.Popen[str]:
    """An `xlir index build` that takes the lock, makes its staging folder, then waits for ``gate``."""
    process = subprocess.Popen(
        [*XLIR, "index", "build", str(corpus), str(target), "-c", "bm25", *extra],
        env=_env(XLIR_PAUSE=f"build:started={gate}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while (holder(target) or {}).get("pid") != process.pid:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the build never took the lock: {process.communicate()}")
        time.sleep(0.05)
    return process


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=TIMEOUT)
    return process.returncode, stderr


def _leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


def test_a_second_writer_fails_naming_the_holder(corpora: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "idx"
    build_index(documents(V1), target)
    gate = tmp_path / "gate"
    first = _held_build(corpora["v2"], target, gate, "--overwrite")
    try:
        second = _run("index", "build", str(corpora["v1"]), str(target), "-c", "bm25")
        assert second.returncode == 2, second.stderr
        message = second.stderr
        assert f"pid {first.pid} on {socket.gethostname()}" in message and "a build" in message
        assert "--wait" in message and "Traceback" not in message
        gc = _run("index", "gc", str(target))
        assert gc.returncode == 2 and f"pid {first.pid}" in gc.stderr
        with pytest.raises(IndexLockedError, match=f"pid {first.pid}"):
            IndexUpdater(target)
        with pytest.raises(IndexLockedError, match="after waiting"):
            IndexUpdater(target, wait=True, timeout=0.3)
    finally:
        gate.touch()
    code, stderr = _finish(first)
    assert code == 0 and "index ready" in stderr, stderr
    assert _ids(target) == {r["id"] for r in V2}
    assert _leftovers(target) == []  # no staging folder, no lock file left


def test_with_wait_both_builds_succeed_in_turn(corpora: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "idx"
    gate = tmp_path / "gate"
    first = _held_build(corpora["v1"], target, gate)
    second = subprocess.Popen(
        [*XLIR, "index", "build", str(corpora["v2"]), str(target), "-c", "bm25", "--overwrite", "--wait"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    assert second.poll() is None  # waiting for the first
    gate.touch()
    assert _finish(first)[0] == 0
    code, stderr = _finish(second)
    assert code == 0 and "index ready" in stderr, stderr
    assert _ids(target) == {r["id"] for r in V2}
    updater = IndexUpdater(target, wait=True, timeout=5)  # the lock is free again
    assert updater.upsert(documents(V1[:1])).added == 1


def test_a_killed_writer_leaves_no_stale_lock(corpora: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "idx"
    build_index(documents(V1), target)
    killed = _held_build(corpora["v2"], target, tmp_path / "never", "--overwrite")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=TIMEOUT)
    assert holder(target) is None
    staged = [name for name in _leftovers(target) if ".tmp-" in name]
    assert len(staged) == 1  # the dead build's staging folder
    assert _ids(target) == {r["id"] for r in V1}  # the old index untouched

    gc = _run("index", "gc", str(target))
    assert gc.returncode == 0, gc.stderr
    assert f"removed {target.parent / staged[0]}" in gc.stdout
    assert _leftovers(target) == []

    killed = _held_build(corpora["v2"], target, tmp_path / "never", "--overwrite")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=TIMEOUT)
    done = _run("index", "build", str(corpora["v2"]), str(target), "-c", "bm25", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "removed leftovers of dead builds" in done.stderr
    assert _leftovers(target) == []
    assert _ids(target) == {r["id"] for r in V2}


def test_an_updater_follows_a_rebuild_and_never_writes_the_old_manifest_back(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    build_index(documents(V1), target)
    updater = IndexUpdater(target)
    other = IndexUpdater(target)  # a second writer (process): its batches must not be lost
    other.upsert([Document(id="other", text="a lighthouse in the fog", lang="en")])
    assert updater.upsert([Document(id="mine", text="fog horn", lang="en")]).documents == 5
    assert Manifest.read(target).languages == {"de": 1, "en": 4}

    build_index(documents(V2), target, overwrite=True)
    report = updater.upsert([Document(id="late", text="apple pie", lang="en")])
    assert updater.replaced == 1
    assert report.documents == 4 and report.languages == {"en": 3, "fr": 1}
    manifest = Manifest.read(target)
    assert "de" not in manifest.channels["bm25"]["subindexes"]
    with Searcher(target) as searcher:
        assert {hit.docid for hit in searcher.search("apple pie", k=10).hits} >= {"late"}
    assert _ids(target) == {r["id"] for r in V2} | {"late"}


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(tmp_path: Path) -> None:
    import threading

    target = tmp_path / "idx"
    errors: list[Exception] = []
    with hold(target, "update"), hold(target, "update") as info:
        assert info["pid"] == os.getpid() and info["what"] == "update"

        def other() -> None:
            try:
                with hold(target, "update"):
                    pass
            except IndexLockedError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "an updater (pid" in str(errors[0])
    assert holder(target) is None and _leftovers(target) == []


# -- a real server ---------------------------------------------------------------------------------


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    target = tmp_path / "served"
    build_index(documents(V1), target)
    with serving(target, {"XLIR_API_KEY": KEY}) as url:
        yield url, target


def _post(url: str, *docs: dict) -> httpx.Response:
    return httpx.post(
        f"{url}/documents",
        json={"documents": list(docs)},
        headers={"X-API-Key": KEY},
        timeout=60,
    )


def test_a_server_answers_409_naming_a_build_that_holds_the_lock(
    served: tuple[str, Path], corpora: dict[str, Path], tmp_path: Path
) -> None:
    url, target = served
    gate = tmp_path / "gate"
    build = _held_build(corpora["v2"], target, gate, "--overwrite")
    try:
        response = _post(url, {"id": "blocked", "text": "a lighthouse", "lang": "en"})
        assert response.status_code == 409, response.text
        assert f"pid {build.pid}" in response.json()["error"] and "a build" in response.json()["error"]
    finally:
        gate.touch()
    assert _finish(build)[0] == 0
    response = _post(url, {"id": "after", "text": "apples and a lighthouse", "lang": "en"})
    assert response.status_code == 200, response.text
    assert _ids(target) == {r["id"] for r in V2} | {"after"}


def test_a_rebuild_under_a_running_server_is_followed_by_its_next_write(
    served: tuple[str, Path], corpora: dict[str, Path]
) -> None:
    url, target = served
    assert _post(url, {"id": "early", "text": "lighthouse at dawn", "lang": "en"}).status_code == 200
    rebuilt = _run("index", "build", str(corpora["v2"]), str(target), "-c", "bm25", "--overwrite")
    assert rebuilt.returncode == 0, rebuilt.stderr
    new_build = Manifest.read(target).build_id

    response = _post(url, {"id": "late", "text": "an apple tart", "lang": "en"})
    assert response.status_code == 200, response.text
    manifest = Manifest.read(target)
    assert manifest.build_id == new_build and manifest.documents == 4
    assert set(manifest.channels["bm25"]["subindexes"]) == {"en", "fr"}  # not v1's en + de
    assert _ids(target) == {r["id"] for r in V2} | {"late"}
    with Searcher(target) as searcher:  # the index opens whole for any reader
        assert len(searcher.docstore) == 4
    hits = httpx.get(f"{url}/search", params={"q": "apple tart"}, timeout=30).json()["hits"]
    assert hits[0]["id"] == "late"
    assert httpx.get(f"{url}/documents/v1-de-0", timeout=30).status_code == 404
    search = _run("search", str(target), "orchard apples", "--json")
    assert search.returncode == 0, search.stderr
