"""A corpus with metadata for filter, facet and sort tests, made from the shared XQuAD paragraphs.

Every paragraph gets a ``year`` (integer), a ``field`` of study (keyword), ``venues`` (a multi-valued
keyword), a ``published`` date (ISO string) and, for about half of them, a ``doi`` (keyword): all derived
deterministically from the document id, so a test can count what a filter must keep by brute force.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIELDS = ("physics", "biology", "history", "law", "sports", "music", "medicine", "economics")
VENUES = ("ACL", "EMNLP", "SIGIR", "NAACL", "ECIR", "CIKM")


def _digest(docid: str) -> int:
    return int.from_bytes(hashlib.sha256(docid.encode()).digest()[:8], "big")


def metadata_for(docid: str) -> dict[str, object]:
    """The metadata the corpus gives ``docid`` (the same on every call)."""
    h = _digest(docid)
    year = 1990 + h % 35
    meta: dict[str, object] = {
        "year": year,
        "field": FIELDS[(h >> 8) % len(FIELDS)],
        "venues": sorted({VENUES[(h >> 16) % len(VENUES)], VENUES[(h >> 24) % len(VENUES)]}),
        "published": f"{year}-{1 + (h >> 32) % 12:02d}-{1 + (h >> 40) % 28:02d}",
    }
    if (h >> 48) % 2:
        meta["doi"] = f"10.{1000 + h % 9000}/{docid}"
    return meta


def write_metadata_corpus(
    path: Path, langs: tuple[str, ...] = ("en", "de"), per_lang: int | None = None
) -> Path:
    """JSON Lines of XQuAD paragraphs in ``langs`` (the first ``per_lang`` of each), with metadata."""
    with path.open("w", encoding="utf-8") as out:
        for lang in langs:
            lines = (DATA / "xquad" / "corpus" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
            for line in lines[:per_lang]:
                record = json.loads(line)
                record["lang"] = lang
                record.update(metadata_for(record["id"]))
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
