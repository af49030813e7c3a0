"""The multi-vector channel's files: the codec, every document's compressed tokens, and the cell lists.

- ``centroids.npy`` (K x dim float32), ``bucket_cutoffs.npy`` (dim x 2^b-1), ``bucket_weights.npy``
  (dim x 2^b): the codec (:class:`xlir.indexing.channels.multivector.codec.ResidualCodec`);
- ``codes.npy`` (uint16 or int32, one per token) and ``residuals.npy`` (uint8, dim*b/8 bytes per token);
- ``doc_offsets.npy`` (int64, documents+1): document ``i`` owns tokens ``offsets[i]:offsets[i+1]``;
- ``ivf.npy`` / ``ivf_offsets.npy``: for each centroid, the documents having a token assigned to it (the
  candidate generator; :func:`inverted_lists`);
- ``docids.json``, ``langs.npy`` (int16, -1 unknown), ``languages.json``: ids and languages
  (:class:`xlir.indexing.channels.language_codes.DocumentLanguages`, as in the dense channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from xlir.indexing.channels.files import FileWriters, save_array
from xlir.indexing.channels.language_codes import DOCIDS_FILE, DocumentLanguages
from xlir.indexing.channels.multivector.codec import ResidualCodec
from xlir.indexing.errors import IndexDamagedError, IndexIncompleteError

CENTROIDS_FILE = "centroids.npy"
CUTOFFS_FILE = "bucket_cutoffs.npy"
WEIGHTS_FILE = "bucket_weights.npy"
CODES_FILE = "codes.npy"
RESIDUALS_FILE = "residuals.npy"
OFFSETS_FILE = "doc_offsets.npy"
IVF_FILE = "ivf.npy"
IVF_OFFSETS_FILE = "ivf_offsets.npy"


def load_codec(directory: Path, nbits: int) -> ResidualCodec:
    return ResidualCodec(
        np.load(directory / CENTROIDS_FILE),
        np.load(directory / CUTOFFS_FILE),
        np.load(directory / WEIGHTS_FILE),
        nbits,
    )


def codec_files(codec: ResidualCodec) -> FileWriters:
    """The codec's three files (written at build time only: updates keep the trained codec)."""
    return {
        CENTROIDS_FILE: partial(save_array, array=codec.centroids),
        CUTOFFS_FILE: partial(save_array, array=codec.cutoffs),
        WEIGHTS_FILE: partial(save_array, array=codec.weights),
    }


def inverted_lists(codes: np.ndarray, offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each centroid, the sorted unique documents with a token assigned to it (CSR: ids, offsets)."""
    doc_of_token = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    pairs = np.unique(codes.astype(np.int64) * (len(offsets)) + doc_of_token)
    cells, docs = np.divmod(pairs, len(offsets))
    ivf_offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(cells, minlength=k), out=ivf_offsets[1:])
    return docs.astype(np.int32), ivf_offsets


@dataclass
class TokenStore:
    """Every document's compressed tokens, the centroid -> documents lists, and ids and languages."""

    codes: np.ndarray
    residuals: np.ndarray
    offsets: np.ndarray
    ivf: np.ndarray
    ivf_offsets: np.ndarray
    documents: DocumentLanguages

    @classmethod
    def build(
        cls,
        codes: np.ndarray,
        residuals: np.ndarray,
        offsets: np.ndarray,
        centroids: int,
        documents: DocumentLanguages,
    ) -> TokenStore:
        """The store of these tokens, with its inverted lists over ``centroids`` cells computed."""
        ivf, ivf_offsets = inverted_lists(codes, offsets, centroids)
        return cls(codes, residuals, offsets, ivf, ivf_offsets, documents)

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = False) -> TokenStore:
        """Read the channel at ``directory`` (codes and residuals memory-mapped with ``mmap``)."""
        for name in (CODES_FILE, RESIDUALS_FILE, OFFSETS_FILE, IVF_FILE, DOCIDS_FILE):
            if not (directory / name).is_file():
                raise IndexIncompleteError(
                    f"{directory / name} is missing: the multivector channel of this index is incomplete. "
                    "Rebuild the index."
                )
        mode = "r" if mmap else None
        store = cls(
            codes=np.load(directory / CODES_FILE, mmap_mode=mode),
            residuals=np.load(directory / RESIDUALS_FILE, mmap_mode=mode),
            offsets=np.load(directory / OFFSETS_FILE),
            ivf=np.load(directory / IVF_FILE),
            ivf_offsets=np.load(directory / IVF_OFFSETS_FILE),
            documents=DocumentLanguages.load(directory),
        )
        n, langs, offsets = len(store.documents.docids), len(store.documents.codes), store.offsets
        if not (len(offsets) == n + 1 == langs + 1 and offsets[-1] == len(store.codes)):
            raise IndexDamagedError(
                f"{directory}: {n} ids, {langs} languages, {len(offsets) - 1} documents and "
                f"{len(store.codes)} tokens do not match; the channel is damaged. Rebuild the index."
            )
        return store

    def files(self) -> FileWriters:
        """The token files with ids and languages, for ``write_files`` (build) or ``commit_files`` (update)."""
        return {
            CODES_FILE: partial(save_array, array=self.codes),
            RESIDUALS_FILE: partial(save_array, array=self.residuals),
            OFFSETS_FILE: partial(save_array, array=self.offsets),
            IVF_FILE: partial(save_array, array=self.ivf),
            IVF_OFFSETS_FILE: partial(save_array, array=self.ivf_offsets),
            **self.documents.files(),
        }
