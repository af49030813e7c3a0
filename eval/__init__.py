"""Evaluation: TREC-style topics, qrels and runs, measures and significance tests, and the experiments.

- :mod:`~xlir.eval.trec` reads and writes topics, qrels and runs; :mod:`~xlir.eval.collection` opens a
  collection in the ``shared/data`` layout; :mod:`~xlir.eval.metrics` scores runs (nDCG@10, accuracy@1,
  paired t-test, randomization test); :mod:`~xlir.eval.compare` compares and fuses runs.
- :mod:`~xlir.eval.runner` runs an index over topics; :mod:`~xlir.eval.grid` the language grid, the
  multilingual pool and language bias, over cached indexes; :mod:`~xlir.eval.plots` draws its heat map;
  :mod:`~xlir.eval.cli` is ``xlir eval``.
- :mod:`~xlir.eval.reproduce` regenerates docs/RESULTS.md from the experiments file
  ``eval/experiments.yaml`` (:mod:`~xlir.eval.experiments`), one task module each under
  :mod:`xlir.eval.tasks`, the baselines in :mod:`~xlir.eval.baselines`; :mod:`~xlir.eval.bench_bm25`
  compares xlir's BM25 with Pyserini's; :mod:`~xlir.eval.results` rewrites one section of the results file.

Eval sits above retrieval and below training and the server: it imports neither.
"""
