"""The dense channel writer: sentence-transformers embeddings of every document in one FAISS index.

Documents are encoded as they arrive (a chunk of a few batches at a time, so that the encoder can sort
each chunk by length and pad little), and only their float32 embeddings are kept. ``close`` builds the
FAISS index and writes the channel directory:

- ``index.faiss``: the index; vector ``i`` is document ``docids[i]``;
- ``docids.json``: the document ids in index order;
- ``langs.npy`` (int16 codes, -1 = unknown) and ``languages.json`` (the code table): each document's
  language, which the searcher turns into a FAISS ID selector to filter by language inside the search.

Index kinds: ``flat`` (exact inner product), ``hnsw`` (graph, inner product), ``ivfpq`` (inverted lists
over product-quantized codes: compact, approximate), ``auto`` (flat below ``ann_threshold`` documents,
else hnsw). Vectors are L2-normalized, so inner product is cosine similarity.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.documents import Document
from xlir.indexing.language_codes import LanguageCodes
from xlir.indexing.pending import PendingBatch
from xlir.models.encoders.dense import SentenceTransformerEncoder

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
DOCIDS_FILE = "docids.json"
LANGS_FILE = "langs.npy"
LANGUAGES_FILE = "languages.json"

INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")
#: Fewer documents than this cannot train even 4-bit product quantizers (39 points per centroid, FAISS's
#: minimum); ``ivfpq`` then builds ``flat``.
MIN_IVFPQ_DOCUMENTS = 39 * 16
#: Texts encoded per call, in batches: length-sorting within a chunk keeps padding (and time) low.
CHUNK_BATCHES = 16
#: Vectors used to train IVF/PQ quantizers at most (a seeded sample of the corpus above that).
MAX_TRAINING_VECTORS = 100_000


def document_text(doc: Document) -> str:
    """The text the dense channel embeds for a document: title and text when it has a title."""
    if doc.title and doc.title.strip():
        return f"{doc.title.strip()} {doc.text}"
    return doc.text


def _positive_int(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"dense.{key} must be a positive integer (got {value!r}); fix the dense config.")
    return value


class DenseWriter:
    """Channel writer for dense retrieval: encodes each document and builds a FAISS index on ``close``.

    ``config`` is :class:`xlir.indexing.config.DenseConfig` as a dict: ``model``, ``batch_size``,
    ``max_length``, ``index``, ``ann_threshold``, ``hnsw_m``, ``ef_search``, ``device``.
    """

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model_name = str(config.get("model") or "multilingual-e5-small")
        self.index_kind = str(config.get("index", "auto"))
        if self.index_kind not in INDEX_KINDS:
            raise ValueError(
                f"unknown dense index kind {self.index_kind!r}; choose one of {', '.join(INDEX_KINDS)}."
            )
        self.batch_size = _positive_int(config, "batch_size", 32)
        self.max_length = _positive_int(config, "max_length", 512)
        self.ann_threshold = _positive_int(config, "ann_threshold", 50_000)
        self.hnsw_m = _positive_int(config, "hnsw_m", 32)
        self.ef_search = _positive_int(config, "ef_search", 128)
        self.encoder = SentenceTransformerEncoder(
            self.model_name,
            batch_size=self.batch_size,
            max_length=self.max_length,
            device=str(config.get("device") or "auto"),
        )
        self._chunk = self.batch_size * CHUNK_BATCHES
        self._texts: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._docids: list[str] = []
        self._langs: list[int] = []
        self._lang_codes = LanguageCodes(channel="dense")
        self._encode_seconds = 0.0
        self._closed = False

    def add(self, doc: Document) -> None:
        """Queue one document; its text is encoded with the next full chunk."""
        if self._closed:
            raise RuntimeError("this dense writer is closed; open a new one to index more documents.")
        self._docids.append(doc.id)
        self._langs.append(self._lang_codes.code(doc.lang))
        self._texts.append(document_text(doc))
        if len(self._texts) >= self._chunk:
            self._flush()

    def close(self) -> dict[str, Any]:
        """Encode what is left, build and write the FAISS index; return the manifest details."""
        if self._closed:
            raise RuntimeError("this dense writer is already closed.")
        self._flush()
        self._closed = True
        if not self._docids:
            raise ValueError("the dense channel received no documents; there is nothing to index.")
        vectors = np.concatenate(self._vectors) if len(self._vectors) > 1 else self._vectors[0]
        self._vectors.clear()
        started = time.perf_counter()
        index, built, extra = build_faiss_index(
            vectors,
            self.index_kind,
            ann_threshold=self.ann_threshold,
            hnsw_m=self.hnsw_m,
            ef_search=self.ef_search,
        )
        del vectors
        import faiss

        faiss.write_index(index, str(self.directory / INDEX_FILE))
        (self.directory / DOCIDS_FILE).write_text(
            json.dumps(self._docids, ensure_ascii=False), encoding="utf-8"
        )
        np.save(self.directory / LANGS_FILE, np.asarray(self._langs, dtype=np.int16))
        table = self._lang_codes.table()
        (self.directory / LANGUAGES_FILE).write_text(json.dumps(table), encoding="utf-8")
        count = len(self._docids)
        return {
            "model": self.model_name,
            "model_path": _model_path(self.model_name),
            "dim": self.encoder.dim,
            "index": built,
            "documents": count,
            "ef_search": self.ef_search,
            "hnsw_m": self.hnsw_m,
            **extra,
            "batch_size": self.batch_size,
            "max_length": self.encoder.max_length,
            "prompts": self.encoder.prompts,
            "encode_seconds": round(self._encode_seconds, 3),
            "docs_per_second": round(count / self._encode_seconds, 2) if self._encode_seconds > 0 else None,
            "index_seconds": round(time.perf_counter() - started, 3),
        }

    def _flush(self) -> None:
        if not self._texts:
            return
        started = time.perf_counter()
        vectors = self.encoder.encode_documents(self._texts)
        self._encode_seconds += time.perf_counter() - started
        self._vectors.append(vectors)
        self._texts = []


def _model_path(name: str) -> str:
    from xlir.models.registry import resolve_model

    return str(resolve_model(name))


def build_faiss_index(
    vectors: np.ndarray,
    kind: str = "auto",
    *,
    ann_threshold: int = 50_000,
    hnsw_m: int = 32,
    ef_search: int = 128,
) -> tuple[Any, str, dict[str, Any]]:
    """Build a FAISS inner-product index over ``vectors``.

    Returns ``(index, kind actually built, extra details)``: ``auto`` resolves to ``flat`` or ``hnsw``,
    and ``ivfpq`` over fewer than :data:`MIN_IVFPQ_DOCUMENTS` vectors falls back to ``flat`` (with a
    warning). The index is always a CPU index, ready to write.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, dim) matrix of vectors, got shape {vectors.shape}")
    n, dim = vectors.shape
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown dense index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}.")
    if kind == "auto":
        kind = "flat" if n < ann_threshold else "hnsw"
    if kind == "ivfpq" and n < MIN_IVFPQ_DOCUMENTS:
        log.warning(
            "ivfpq needs at least %d documents to train its quantizers; %d given, building an exact flat index",
            MIN_IVFPQ_DOCUMENTS,
            n,
        )
        kind = "flat"

    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return index, "flat", {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
        index.add(vectors)
        return index, "hnsw", {"ef_construction": index.hnsw.efConstruction}
    return _build_ivfpq(vectors)


def ivfpq_parameters(n: int, dim: int) -> tuple[int, int, int, int]:
    """(nlist, PQ sub-quantizers m, bits per code, nprobe) for ``n`` vectors of ``dim`` dimensions.

    nlist ~ 4 sqrt(n) with at least 39 training points per list; m = dim/8 for dim >= 128 (dim/4 below,
    or dim/2 when that does not divide dim), i.e. 8 (4) dimensions per code; 8-bit codes once there are enough vectors to train 256
    centroids (39 * 256), fewer bits below; nprobe = nlist/32, at least 16 (all lists when fewer).
    """
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    per_code = 8 if dim >= 128 else 4
    m = next((dim // sub for sub in (per_code, 4, 2) if dim % sub == 0), dim)
    nbits = 8 if n >= 39 * 256 else max(4, min(8, int(math.log2(max(n // 39, 1)))))
    nprobe = min(nlist, max(16, nlist // 32))
    return nlist, m, nbits, nprobe


def _build_ivfpq(vectors: np.ndarray) -> tuple[Any, str, dict[str, Any]]:
    import faiss

    n, dim = vectors.shape
    nlist, m, nbits, nprobe = ivfpq_parameters(n, dim)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    training = vectors
    if n > MAX_TRAINING_VECTORS:
        rng = np.random.default_rng(1234)
        training = vectors[np.sort(rng.choice(n, MAX_TRAINING_VECTORS, replace=False))]
    index = _train_and_add(index, training, vectors)
    index.nprobe = nprobe
    return index, "ivfpq", {"nlist": nlist, "pq_m": m, "pq_bits": nbits, "nprobe": nprobe}


def _train_and_add(index: Any, training: np.ndarray, vectors: np.ndarray) -> Any:
    """Train and fill ``index``, on a GPU when FAISS has one (then copied back to the CPU)."""
    import faiss

    if faiss.get_num_gpus() > 0 and hasattr(faiss, "StandardGpuResources"):
        try:
            resources = faiss.StandardGpuResources()
            gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
            gpu_index.train(training)
            gpu_index.add(vectors)
            return faiss.index_gpu_to_cpu(gpu_index)
        except (RuntimeError, AttributeError) as exc:  # a GPU build is an optimization, never required
            log.warning("building the FAISS index on the GPU failed (%s); building it on the CPU", exc)
    index.train(training)
    index.add(vectors)
    return index


class DenseUpdater:
    """Incremental updates of a built dense channel (the :class:`xlir.indexing.channels.base.ChannelUpdater` protocol).

    Opened with the channel's manifest details, it encodes added documents with exactly the model,
    ``batch_size`` and ``max_length`` recorded there (and refuses a model whose prompts or dimension
    changed since the build). ``delete`` and ``add`` only record the batch; ``close`` applies it to the
    FAISS index, keeping vector ``i`` = ``docids[i]`` with no holes, so the searcher reads an updated
    channel exactly like a freshly built one:

    * ``flat``: ``remove_ids`` (which compacts the stored vectors, keeping their order), then ``add``;
      exact, so scores equal a fresh build's. Cost: one copy of the vectors per batch.
    * ``hnsw``: new vectors are inserted into the graph; when the batch deletes (or replaces) a
      document, the graph is rebuilt from the vectors it stores (``IndexHNSWFlat`` keeps them in full
      precision, so nothing is re-encoded). Cost of a rebuild: a fresh HNSW build over the corpus.
    * ``ivfpq``: ``remove_ids`` on the inverted lists, ids renumbered to stay contiguous, new vectors
      encoded with the quantizers trained at build time (not retrained: rebuild after the corpus has
      drifted far). Cost: one pass over the inverted lists per batch with deletions.

    The index keeps the kind it was built with (an ``auto`` flat index does not turn into HNSW when it
    grows past ``ann_threshold``; rebuild for that). The channel's files are replaced together with
    :func:`xlir.indexing.filecommit.commit_files` (a crash leaves the old set or the new one).
    """

    def __init__(
        self, directory: Path, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        import faiss

        from xlir.indexing.filecommit import recover

        self.directory = Path(directory)
        recover(self.directory)
        self.details = dict(details)
        self.config = dict(config or {})
        self.kind = str(self.details.get("index", "flat"))
        if self.kind not in ("flat", "hnsw", "ivfpq"):
            raise ValueError(
                f"the dense channel at {self.directory} records index kind {self.kind!r}, which cannot be "
                "updated; the manifest is damaged: rebuild the index."
            )
        model = self.details.get("model")
        if not model:
            raise ValueError(f"{self.directory}: the manifest names no dense model; rebuild the index.")
        self.model_name = str(model)
        path = self.directory / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the dense channel of this index is incomplete. Rebuild the index."
            )
        self.index = faiss.read_index(str(path))
        self._docids: list[str] = json.loads((self.directory / DOCIDS_FILE).read_text(encoding="utf-8"))
        self._codes = np.load(self.directory / LANGS_FILE).astype(np.int16)
        table: list[str] = json.loads((self.directory / LANGUAGES_FILE).read_text(encoding="utf-8"))
        if not (len(self._docids) == len(self._codes) == self.index.ntotal):
            raise ValueError(
                f"{self.directory}: the FAISS index holds {self.index.ntotal} vectors but "
                f"{len(self._docids)} ids and {len(self._codes)} languages are recorded; the channel is "
                "damaged. Rebuild the index."
            )
        self._lang_codes = LanguageCodes(table, channel="dense")
        self._batch: PendingBatch[tuple[int, np.ndarray]] = PendingBatch(self._docids)
        self._encoder: SentenceTransformerEncoder | None = None
        self._encode_seconds = 0.0
        self._closed = False

    def delete(self, ids: list[str]) -> None:
        """Forget the documents with these ids (ids the channel does not hold are ignored)."""
        self._check_open()
        self._batch.delete(ids)

    def add(self, docs: list[Document]) -> None:
        """Encode ``docs`` with the recorded model; an id the channel already holds is replaced."""
        self._check_open()
        if not docs:
            return
        self.delete([doc.id for doc in docs])
        encoder = self._get_encoder()
        started = time.perf_counter()
        vectors = encoder.encode_documents([document_text(doc) for doc in docs])
        self._encode_seconds += time.perf_counter() - started
        for doc, vector in zip(docs, vectors, strict=True):
            self._batch.add(doc.id, (self._lang_codes.code(doc.lang), vector))

    def close(self) -> dict[str, Any]:
        """Apply the batch to the FAISS index, replace the channel's files and return the new details."""
        self._check_open()
        self._closed = True
        from xlir.indexing.filecommit import commit_files

        batch = self._batch
        if batch.changed:
            started = time.perf_counter()
            removed = batch.removed
            index = self._updated_index(removed)
            docids = batch.result_ids()
            codes = np.concatenate(
                [self._codes[batch.keep], np.asarray([c for c, _ in batch.added.values()], dtype=np.int16)]
            )
            if index.ntotal != len(docids):
                raise RuntimeError(
                    f"dense update produced {index.ntotal} vectors for {len(docids)} documents; nothing was "
                    "written. Report this as a bug."
                )
            table = self._lang_codes.table()
            commit_files(
                self.directory,
                {
                    INDEX_FILE: lambda path: _write_faiss(index, path),
                    DOCIDS_FILE: lambda path: path.write_text(
                        json.dumps(docids, ensure_ascii=False), encoding="utf-8"
                    ),
                    LANGS_FILE: lambda path: _save_npy(path, codes),
                    LANGUAGES_FILE: lambda path: path.write_text(json.dumps(table), encoding="utf-8"),
                },
            )
            log.info(
                "dense update: -%d +%d documents (%s index) in %.2f s",
                len(removed),
                len(batch.added),
                self.kind,
                time.perf_counter() - started,
            )
            self.details["documents"] = len(docids)
        else:
            self.details["documents"] = int(self.index.ntotal)
        if "bytes" in self.details:
            self.details["bytes"] = _directory_bytes(self.directory)
        self.index = None
        return self.details

    def abort(self) -> None:
        """Discard the batch (nothing was written)."""
        self._closed = True
        self.index = None

    def _updated_index(self, removed: np.ndarray) -> Any:
        import faiss

        index = self.index
        new = (
            np.ascontiguousarray(np.stack([v for _, v in self._batch.added.values()]), dtype=np.float32)
            if self._batch.added
            else np.zeros((0, index.d), dtype=np.float32)
        )
        if self.kind == "flat":
            if len(removed):
                index.remove_ids(faiss.IDSelectorBatch(removed))  # compacts, keeping the order
        elif self.kind == "hnsw":
            if len(removed):
                kept = index.reconstruct_n(0, index.ntotal)[self._batch.keep]
                return self._hnsw(np.concatenate([kept, new]))
        else:
            if len(removed):
                _remove_ivf(index, removed, self._batch.keep)
        if len(new):
            index.add(new)
        return index

    def _hnsw(self, vectors: np.ndarray) -> Any:
        import faiss

        m = int(self.details.get("hnsw_m", 32))
        index = faiss.IndexHNSWFlat(self.index.d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.details.get("ef_construction", max(40, 2 * m)))
        index.hnsw.efSearch = int(self.details.get("ef_search", 128))
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return index

    def _get_encoder(self) -> SentenceTransformerEncoder:
        if self._encoder is None:
            encoder = SentenceTransformerEncoder(
                self.model_name,
                batch_size=int(self.details.get("batch_size", 32)),
                max_length=int(self.details.get("max_length", 512)),
                device=str(self.config.get("device") or "auto"),
            )
            if encoder.dim != self.index.d:
                raise ValueError(
                    f"model {self.model_name!r} now makes {encoder.dim}-dimensional vectors but the index "
                    f"holds {self.index.d}-dimensional ones: restore the model the index was built with "
                    "or rebuild the index."
                )
            recorded = self.details.get("prompts")
            if recorded is not None and dict(recorded) != encoder.prompts:
                raise ValueError(
                    f"the index was built with prompts {recorded} but model {self.model_name!r} now has "
                    f"{encoder.prompts}: new documents would not match the indexed ones. Restore the model "
                    "or rebuild the index."
                )
            self._encoder = encoder
        return self._encoder

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("DenseUpdater used after close()/abort(); open a new updater")


def _remove_ivf(index: Any, removed: np.ndarray, keep: np.ndarray) -> None:
    """Remove vectors ``removed`` from an IVF index and renumber the others 0..n-1 in their old order."""
    import faiss

    index.remove_ids(faiss.IDSelectorBatch(removed))
    renumber = np.cumsum(keep, dtype=np.int64) - 1
    invlists = faiss.extract_index_ivf(index).invlists
    for number in range(invlists.nlist):
        size = invlists.list_size(number)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(number), size).copy()
        codes = faiss.rev_swig_ptr(invlists.get_codes(number), size * invlists.code_size).copy()
        fresh = np.ascontiguousarray(renumber[ids], dtype=np.int64)
        invlists.update_entries(number, 0, size, faiss.swig_ptr(fresh), faiss.swig_ptr(codes))


def _directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _write_faiss(index: Any, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)
