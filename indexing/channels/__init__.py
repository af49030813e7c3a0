"""The channel registry: every index channel xlir has, one line each.

A channel is one folder here, ``channels/<name>/``, holding its config section (``settings.py``), its
on-disk format (``store.py``), its ``writer.py``, ``updater.py`` and ``searcher.py``. :data:`CHANNELS`
names those classes as ``"module:Class"`` paths relative to this package, so that a channel's heavy
imports (the JVM, torch, FAISS) happen only when it is used; :mod:`xlir.indexing.channels.base` opens
them. Adding a channel is one folder and one line below; :class:`xlir.indexing.config.IndexConfig` gets
its config section from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlir.indexing.channels.bm25.settings import BM25Config
from xlir.indexing.channels.dense.settings import DenseConfig
from xlir.indexing.channels.multivector.settings import MultiVectorConfig
from xlir.indexing.channels.sparse.settings import SparseConfig
from xlir.indexing.channels.translate.settings import TranslateConfig


@dataclass(frozen=True)
class ChannelSpec:
    """What xlir knows about one channel before loading any of its code.

    ``settings``: the config section dataclass (``IndexConfig.<name>``, saved in the manifest).
    ``writer`` / ``updater`` / ``searcher``: ``"module:Class"`` relative to this package; constructors
    ``Writer(directory, config)``, ``Updater(directory, details, config)``, ``Searcher(directory, details)``.
    ``updater=None``: the channel cannot be updated in place (its indexes must be rebuilt).
    ``lexical``: the evidence is shared words, so a fused search keeps this channel to documents in the
    query's own language (see :meth:`xlir.retrieval.searcher.Searcher.ranking`).
    ``reads_query_language``: the searcher uses the query's detected language (``query_lang``), so the
    facade passes the detection it made (the translate channel translates queries by it).
    """

    name: str
    settings: type
    writer: str
    searcher: str
    updater: str | None = None
    lexical: bool = False
    reads_query_language: bool = False


#: channel name -> spec, in the order the manifest lists config sections.
CHANNELS: dict[str, ChannelSpec] = {
    spec.name: spec
    for spec in (
        ChannelSpec("bm25", BM25Config, "bm25.writer:BM25Writer", "bm25.searcher:BM25Searcher", "bm25.updater:BM25Updater", lexical=True),
        ChannelSpec("dense", DenseConfig, "dense.writer:DenseWriter", "dense.searcher:DenseSearcher", "dense.updater:DenseUpdater"),
        ChannelSpec("sparse", SparseConfig, "sparse.writer:SparseWriter", "sparse.searcher:SparseSearcher", "sparse.updater:SparseUpdater"),
        ChannelSpec("multivector", MultiVectorConfig, "multivector.writer:MultiVectorWriter", "multivector.searcher:MultiVectorSearcher", "multivector.updater:MultiVectorUpdater"),
        ChannelSpec("translate", TranslateConfig, "translate.writer:TranslatedWriter", "translate.searcher:TranslatedSearcher", "translate.updater:TranslatedUpdater", reads_query_language=True),
    )
}  # fmt: skip
