"""The reproduction tasks of ``python -m xlir.eval.reproduce``, one module per table of docs/RESULTS.md.

Each module has a ``TASK`` (:class:`~xlir.eval.tasks.base.Task`): its name, the settings it reads and its
``run``; :mod:`xlir.eval.tasks.base` holds what they share, :mod:`xlir.eval.baselines` the baselines.
"""
