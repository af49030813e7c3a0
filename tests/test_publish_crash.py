"""A build killed at every point of its publish step leaves the old or the new index, whole (issue 20).

A real `xlir index build --overwrite` process exits at a fault-injection point (``XLIR_FAULT``, no
cleanup, as a SIGKILL would); then the index must open whole - every reader (a Searcher, an updater,
`xlir index info`) restores an interrupted publish - and the next build or `xlir index gc` removes what
the dead build left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

from xlir.indexing.builder import build_index
from xlir.indexing.documents import Document
from xlir.indexing.manifest import Manifest
from xlir.indexing.publish import FAULT_EXIT, PUBLISH_POINTS
from xlir.indexing.updater import IndexUpdater
from xlir.retrieval.searcher import Searcher

XLIR = [sys.executable, "-m", "xlir.cli"]

OLD = [
    Document(id=f"old-{i}", text=f"lighthouse keeper number {i} by the harbour", lang=lang)
    for i, lang in enumerate(["en", "en", "de"])
]
NEW = [
    Document(id=f"new-{i}", text=f"orchard apple number {i} in autumn", lang=lang)
    for i, lang in enumerate(["en", "fr", "fr", "en"])
]


def _crashed_rebuild(tmp_path: Path, point: str, *, first: bool = False) -> Path:
    """An index of OLD (unless ``first``), then a rebuild of NEW that exits at ``point``."""
    target = tmp_path / "idx"
    if not first:
        build_index(OLD, target)
    corpus = write_jsonl(tmp_path / "new.jsonl", [{"id": d.id, "text": d.text, "lang": d.lang} for d in NEW])
    done = subprocess.run(
        [*XLIR, "index", "build", str(corpus), str(target), "-c", "bm25", "--overwrite"],
        env={**os.environ, "XLIR_FAULT": point},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == FAULT_EXIT, done.stderr
    return target


def _whole(target: Path) -> str:
    """Which index ``target`` opens as ("old" or "new"), checked whole: manifest, docstore, channel."""
    with Searcher(target) as searcher:
        ids = {doc.id for doc in searcher.docstore}
        version = "new" if ids == {d.id for d in NEW} else "old"
        expected = NEW if version == "new" else OLD
        assert ids == {d.id for d in expected}
        assert searcher.manifest.documents == len(expected)
        assert searcher.manifest.languages == {
            lang: sum(d.lang == lang for d in expected) for lang in {d.lang for d in expected}
        }
        query = "orchard apple" if version == "new" else "lighthouse keeper"
        hits = searcher.search(query, k=10, langs=["en"]).hits
        assert {hit.docid for hit in hits} == {d.id for d in expected if d.lang == "en"}
    return version


def _leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ("publish:start", "old"),  # the staged build is complete, but the old index is still in place
        ("publish:after-old-rename", "new"),  # no index at the target: the complete staged build wins
        ("publish:after-new-rename", "new"),
        ("publish:after-old-manifest-removed", "new"),  # the half-removed old index is never restored
    ],
)
def test_a_build_killed_at_any_point_of_its_publish_leaves_an_index_whole(
    tmp_path: Path, point: str, expected: str
) -> None:
    target = _crashed_rebuild(tmp_path, point)
    assert _whole(target) == expected
    assert _whole(target) == expected  # and stays so on the next open
    build_index(OLD, target, overwrite=True)  # the next build removes what the dead one left
    assert _leftovers(target) == []
    assert _whole(target) == "old"


def test_every_publish_point_is_covered() -> None:
    assert set(PUBLISH_POINTS) == {
        "publish:start",
        "publish:after-old-rename",
        "publish:after-new-rename",
        "publish:after-old-manifest-removed",
    }


def test_index_info_restores_an_interrupted_publish(tmp_path: Path) -> None:
    target = _crashed_rebuild(tmp_path, "publish:after-old-rename")
    assert not target.exists()
    info = subprocess.run(
        [*XLIR, "index", "info", str(target), "--json"], capture_output=True, text=True, timeout=180
    )
    assert info.returncode == 0, info.stderr
    assert '"documents": 4' in info.stdout
    assert Manifest.read(target, recover=False).documents == 4
    gc = subprocess.run([*XLIR, "index", "gc", str(target)], capture_output=True, text=True, timeout=180)
    assert gc.returncode == 0, gc.stderr
    assert "removed" in gc.stdout and ".idx.old-" in gc.stdout
    assert _leftovers(target) == []


def test_an_updater_restores_an_interrupted_publish_and_writes_to_it(tmp_path: Path) -> None:
    target = _crashed_rebuild(tmp_path, "publish:after-old-rename")
    updater = IndexUpdater(target)
    report = updater.upsert([Document(id="extra", text="pear orchard", lang="en")])
    assert report.documents == len(NEW) + 1


def test_gc_restores_a_first_build_that_died_publishing(tmp_path: Path) -> None:
    target = _crashed_rebuild(tmp_path, "publish:start", first=True)
    assert not target.exists()
    gc = subprocess.run([*XLIR, "index", "gc", str(target)], capture_output=True, text=True, timeout=180)
    assert gc.returncode == 0, gc.stderr
    assert "restored" in gc.stdout
    assert _whole(target) == "new" and _leftovers(target) == []
