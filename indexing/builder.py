"""Index builds: corpus -> every channel + docstore + manifest, published atomically.

A build holds the target's writer lock (:mod:`xlir.indexing.locking`) from start to publish: a second
build, an updater or a writing server on the same target waits or fails naming it. Under the lock it
first restores an interrupted publish and removes the leftovers of dead builds
(:mod:`xlir.indexing.publish`), then writes into a temporary sibling directory and only replaces the
target once every channel has been written, verified and described in the manifest. If anything fails
(bad corpus line, a channel error, Ctrl-C), the temporary directory is removed and the previous index,
if any, is untouched; if the process dies, the next build or open finds the old or the new index whole.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from itertools import islice
from pathlib import Path

from xlir.errors import ConflictError
from xlir.indexing.channels import CHANNELS
from xlir.indexing.channels.base import ChannelWriter, ChunkedWriter, open_writer
from xlir.indexing.channels.files import directory_bytes
from xlir.indexing.config import IndexConfig
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.errors import ConfigError
from xlir.indexing.fields import FieldInference, FieldValueError, check_fields, field_rows
from xlir.indexing.locking import hold
from xlir.indexing.manifest import MANIFEST_NAME, Manifest
from xlir.indexing.progress import NO_PROGRESS, BuildProgress, corpus_size
from xlir.indexing.publish import discard, fault, publish, recover, remove_leftovers, staging_dir

log = logging.getLogger(__name__)

_BATCH = 2000


class IndexExistsError(ConflictError, FileExistsError):
    """The target directory already holds something and the caller did not ask to replace it."""


def build_index(
    documents: Iterable[Document],
    index_dir: Path | str,
    config: IndexConfig | None = None,
    *,
    overwrite: bool = False,
    sources: Iterable[str] = (),
    skipped: Counter[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    wait: bool = False,
    timeout: float | None = None,
    progress: BuildProgress | None = None,
) -> Manifest:
    """Build an index over ``documents`` at ``index_dir`` and return its manifest.

    ``skipped`` is the reader's counter of skipped lines (``on_error="skip"``); duplicate ids skipped
    here are added to it, and the totals are recorded in the manifest. ``on_progress`` is called with
    the number of documents indexed so far, every few thousand documents and at the end; ``progress``
    (:mod:`xlir.indexing.progress`) is told each stage's documents done of the total, as it goes.
    Another writer on the target: :class:`xlir.indexing.locking.IndexLockedError`, or with ``wait`` a
    wait for it (up to ``timeout`` seconds; None: as long as it takes).
    """
    config = config or IndexConfig()
    target = Path(index_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    with hold(target, "build", wait=wait, timeout=timeout):
        recover(target)
        removed = remove_leftovers(target)
        if removed:
            log.warning("removed leftovers of dead builds: %s", ", ".join(p.name for p in removed))
        return _build_locked(
            documents, target, config, overwrite, sources, skipped, on_progress, progress or NO_PROGRESS
        )


def _build_locked(
    documents: Iterable[Document],
    target: Path,
    config: IndexConfig,
    overwrite: bool,
    sources: Iterable[str],
    skipped: Counter[str] | None,
    on_progress: Callable[[int], None] | None,
    progress: BuildProgress,
) -> Manifest:
    _check_target(target, overwrite)
    unknown = [c for c in config.channels if c not in CHANNELS]
    if unknown:
        raise ConfigError(f"unknown channel(s) {unknown}; known channels: {sorted(CHANNELS)}")
    skipped = skipped if skipped is not None else Counter()
    declared = check_fields(config.fields)
    total = None
    if config.on_error == "stop" and hasattr(documents, "check_unique_ids"):
        # an open_corpus(): a duplicate id fails now, not after encoding; the pass counts the lines too
        total = documents.check_unique_ids()
    if total is None:
        total = corpus_size(documents)

    staging = staging_dir(target)
    staging.mkdir()
    started = time.perf_counter()
    try:
        fault("build:started")
        writers = {c: open_writer(c, staging / c, config.channel_config(c)) for c in config.channels}
        for stage in ("read", *writers, "docstore"):
            progress.start(stage, total)
        for writer in writers.values():
            if isinstance(writer, ChunkedWriter):
                writer.progress = progress  # reports each encoded chunk (its stage: the channel's name)
        store = DocStore.in_directory(staging, create=True)
        store.declare_fields(declared)
        inference = FieldInference(declared)
        seconds = dict.fromkeys(writers, 0.0)
        count = _ingest(documents, config, writers, seconds, store, skipped, on_progress, inference, progress)
        progress.finish("read")
        if count == 0:
            raise CorpusError(
                "corpus",
                "no documents to index",
                "Check the corpus path and format (JSONL with id and text).",
            )
        channels = {}
        for name, writer in writers.items():
            start = time.perf_counter()
            progress.start(f"{name} write")
            channels[name] = writer.close()
            channels[name]["build_seconds"] = round(seconds[name] + time.perf_counter() - start, 3)
            channels[name]["bytes"] = directory_bytes(staging / name)
            progress.finish(f"{name} write")
            progress.finish(name)
        languages = store.language_counts()
        store.declare_fields(inference.fields())
        fields = store.fields
        store.close()
        progress.finish("docstore")
        progress.start("publish")
        manifest = Manifest(
            config=config.to_dict(),
            channels=channels,
            documents=count,
            languages=languages,
            sources=[str(s) for s in sources],
            skipped=dict(skipped),
            fields=fields,
            build_seconds=round(time.perf_counter() - started, 3),
            build_id=uuid.uuid4().hex,
        )
        manifest.write(staging)  # last and atomically: the staged build is complete from here on
        publish(staging, target)
        progress.finish("publish")
    except BaseException:
        discard(staging)
        raise
    return manifest


def _ingest(
    documents: Iterable[Document],
    config: IndexConfig,
    writers: dict[str, ChannelWriter],
    seconds: dict[str, float],
    store: DocStore,
    skipped: Counter[str],
    on_progress: Callable[[int], None] | None,
    inference: FieldInference,
    progress: BuildProgress = NO_PROGRESS,
) -> int:
    """Check, route and write every document, a batch of :data:`_BATCH` at a time; returns the count.

    Each batch is checked document by document (id, text, duplicates, values of declared fields: the build
    stops at the first bad one, naming it), then handed whole to each writer (``add_many``) and to the
    docstore. The metadata of undeclared keys is watched by ``inference``. Each batch advances the
    ``progress`` of reading, of the docstore and of each writer that does not report its own chunks.
    """
    declared = store.fields
    seen: dict[str, str] = {}
    skip_duplicates = config.on_error == "skip"
    count = 0
    position = 0
    iterator = iter(documents)
    read_seconds = store_seconds = 0.0
    started = time.perf_counter()
    while batch := list(islice(iterator, _BATCH)):
        accepted: list[Document] = []
        for doc in batch:
            position += 1
            docid = doc.id
            text = doc.text
            if (
                type(docid) is str
                and docid
                and not docid.isspace()
                and type(text) is str
                and text
                and not text.isspace()  # isspace: no copy of the text
                and docid not in seen
            ):
                seen[docid] = doc.origin or f"document #{position}"
            elif not _accept_or_raise(doc, position, seen, skip_duplicates, skipped):
                continue
            doc = doc if doc.lang else _with_language(doc, config)
            if doc.metadata:
                if declared and not _fields_fit(doc, declared, seen, skip_duplicates, skipped):
                    continue
                inference.observe(doc.metadata)
            accepted.append(doc)
        read_seconds += time.perf_counter() - started
        progress.advance("read", position, read_seconds)
        if accepted:
            for name, writer in writers.items():
                start = time.perf_counter()
                writer.add_many(accepted)
                seconds[name] += time.perf_counter() - start
                if not isinstance(writer, ChunkedWriter):
                    progress.advance(name, count + len(accepted), seconds[name])
            start = time.perf_counter()
            store.add_many(accepted)
            store_seconds += time.perf_counter() - start
            count += len(accepted)
            progress.advance("docstore", count, store_seconds)
            if on_progress:
                on_progress(count)
        started = time.perf_counter()
    return count


def _accept_or_raise(
    doc: Document, position: int, seen: dict[str, str], skip_duplicates: bool, skipped: Counter[str]
) -> bool:
    """The slow path of :func:`_ingest`'s checks: raise for a bad id or text; skip or raise for a duplicate.

    Returns True (and records the id in ``seen``) for a document that passes after all.
    """
    where = doc.origin or f"document #{position}"
    if not isinstance(doc.id, str) or not doc.id or doc.id.isspace():
        raise CorpusError(where, f"invalid document id {doc.id!r}", "Give every document a non-empty id.")
    if not isinstance(doc.text, str):
        raise CorpusError(
            where,
            f"the text of document {doc.id!r} is a {type(doc.text).__name__}, not a str",
            "Give every document its text as a string.",
        )
    if not doc.text or doc.text.isspace():
        raise CorpusError(where, f"document {doc.id!r} has empty text", "Remove it or give it text.")
    if doc.id in seen:
        if skip_duplicates:
            skipped["duplicate_id"] += 1
            log.warning("%s: duplicate id %r skipped (first seen at %s)", where, doc.id, seen[doc.id])
            return False
        raise CorpusError(
            where,
            f"duplicate document id {doc.id!r} (first seen at {seen[doc.id]})",
            "Ids must be unique across the corpus: fix the id, or pass --on-error skip to keep the first.",
            reason="duplicate_id",
        )
    seen[doc.id] = where  # a str subclass id or text: valid, only not on the fast path
    return True


def _fields_fit(
    doc: Document, declared: dict[str, str], seen: dict[str, str], skip: bool, skipped: Counter[str]
) -> bool:
    """Whether the values of ``doc``'s declared fields fit their types; raise (or skip and count) if not."""
    try:
        for _ in field_rows(doc.metadata, declared, docid=doc.id, where=seen[doc.id]):
            pass
    except FieldValueError as exc:
        if not skip:
            raise
        del seen[doc.id]
        skipped[exc.reason] += 1
        log.warning("skipped %s", exc)
        return False
    return True


def _with_language(doc: Document, config: IndexConfig) -> Document:
    if doc.lang:
        return doc
    if config.language.default:
        return replace(doc, lang=config.language.default)
    from xlir.models.languages import detect_language

    code, confidence = detect_language(doc.text)
    metadata = {**doc.metadata, "lang_detected": round(confidence, 3)}
    return replace(
        doc, lang=code if confidence >= config.language.min_confidence else None, metadata=metadata
    )


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise IndexExistsError(f"{target} exists and is not a directory: choose another index path.")
    if (target / MANIFEST_NAME).is_file():
        if not overwrite:
            raise IndexExistsError(
                f"{target} already holds an index: pass --overwrite to replace it "
                "(the old index stays usable until the new one is complete)."
            )
        return
    if any(target.iterdir()):
        raise IndexExistsError(
            f"{target} is a non-empty directory that is not an xlir index: refusing to replace it. "
            "Choose a new or empty directory."
        )
