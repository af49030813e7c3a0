"""Shared fixtures: the bundled sample, slices of ../shared/data, one sample index per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "xlir" / "data" / "sample"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "xquad").is_dir():
        pytest.skip(f"{SHARED_DATA} is not there (the shared data sits beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample (6 languages x 48 XQuAD paragraphs) built once with the default config."""
    from xlir.indexing.builder import build_index
    from xlir.indexing.readers import open_corpus

    target = tmp_path_factory.mktemp("indexes") / "sample"
    build_index(open_corpus(SAMPLE), target)
    return target


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
