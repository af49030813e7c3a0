"""Incremental updates of a built multivector channel: tokens compressed with the codec trained at build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import PositionalUpdater
from xlir.indexing.channels.language_codes import DocumentLanguages, LanguageCodes
from xlir.indexing.channels.multivector.store import TokenStore, load_codec
from xlir.indexing.channels.multivector.writer import multivector_text
from xlir.indexing.documents import Document
from xlir.indexing.filecommit import commit_files
from xlir.indexing.pending import PendingBatch
from xlir.models.encoders.token_base import TokenEncoder
from xlir.models.encoders.tokens import open_token_encoder


class MultiVectorUpdater(PositionalUpdater[tuple[int, np.ndarray, np.ndarray]]):
    """Incremental updates of a built multivector channel (the ``ChannelUpdater`` protocol).

    New documents are encoded with the recorded encoder and compressed with the channel's existing codec
    (centroids and residual buckets stay as trained at build time, as in PLAID's index updates); deleted
    documents' tokens are dropped. ``close`` rewrites codes, residuals, offsets, the centroid -> documents
    lists, ids and languages together (:func:`xlir.indexing.filecommit.commit_files`). A document's score
    depends only on its own tokens, so untouched documents score exactly as before; the centroids were
    trained on the corpus as built, so after large changes a rebuild compresses new text better
    (``reconstruction_cosine`` in the manifest is from the build).
    """

    def __init__(
        self, directory: Path | str, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        super().__init__(directory, details, config)
        self.codec = load_codec(self.directory, int(self.details.get("nbits", 2)))
        store = TokenStore.load(self.directory)
        self._codes = store.codes
        self._residuals = store.residuals
        self._offsets = store.offsets
        docids = store.documents.docids
        self._langs = store.documents.codes
        table = store.documents.table
        self._lang_codes = LanguageCodes(table, channel="multivector")
        self._batch = PendingBatch(docids)
        self._encoder: TokenEncoder | None = None

    def _encode(self, docs: list[Document]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Each document's language code, centroid codes and packed residuals (recorded encoder, built codec)."""
        if self._encoder is None:
            self._encoder = open_token_encoder(self.details)
        encoded = self._encoder.encode_documents([multivector_text(d) for d in docs], [d.lang for d in docs])
        items = []
        for doc, matrix in zip(docs, encoded, strict=True):
            vectors = np.asarray(matrix, dtype=np.float16)  # as the writer keeps them before compressing
            if len(vectors) == 0:
                vectors = np.zeros((1, self.codec.dim), dtype=np.float16)
            codes, packed = self.codec.compress(vectors)
            items.append((self._lang_codes.code(doc.lang), codes, packed))
        return items

    def close(self) -> dict[str, Any]:
        """Write the channel without the deleted documents and with the new ones; return the new details."""
        self._check_open()
        self._closed = True
        batch = self._batch
        if batch.changed:
            lengths = np.diff(self._offsets)
            token_keep = np.repeat(batch.keep, lengths)
            added = list(batch.added.values())
            codes = np.concatenate(
                [self._codes[token_keep], *(c.astype(self._codes.dtype) for _, c, _ in added)]
            )
            residuals = np.concatenate([self._residuals[token_keep], *(r for _, _, r in added)])
            new_lengths = np.concatenate([lengths[batch.keep], [len(c) for _, c, _ in added]]).astype(
                np.int64
            )
            offsets = np.zeros(len(new_lengths) + 1, dtype=np.int64)
            np.cumsum(new_lengths, out=offsets[1:])
            langs = np.concatenate(
                [self._langs[batch.keep], np.asarray([g for g, _, _ in added], dtype=np.int16)]
            )
            docids = batch.result_ids()
            documents = DocumentLanguages(docids, langs, self._lang_codes.table())
            tokens = TokenStore.build(codes, residuals, offsets, len(self.codec.centroids), documents)
            commit_files(self.directory, tokens.files())
            self.details["documents"] = len(docids)
            self.details["tokens"] = int(offsets[-1])
            self.details["tokens_per_document"] = round(int(offsets[-1]) / max(1, len(docids)), 2)
        return self.details
