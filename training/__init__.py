"""Training: how every model xlir ships is trained (``xlir train``), the top layer beside eval and server.

* :mod:`~xlir.training.data`: the English training sets and the frozen backbone's cached token states;
* :mod:`~xlir.training.loop`: the one listwise training loop, checkpoint averaging, MRR@10, provenance;
* one recipe per trained thing: :mod:`~xlir.training.colbert` (the multivector head),
  :mod:`~xlir.training.reranker` (the adapter reranker), :mod:`~xlir.training.gated` (the gated reranker),
  with what the two reranker recipes share in :mod:`~xlir.training.rerank_common`;
* :mod:`~xlir.training.translation_cache`: machine-translated training texts (cross-lingual pairs);
* :mod:`~xlir.training.cli`: the ``xlir train colbert`` / ``xlir train reranker`` command lines.

Nothing below this layer imports it.
"""
