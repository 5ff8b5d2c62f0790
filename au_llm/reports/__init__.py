"""Metric tables, plots and a markdown report of one protocol run, from its predictions table.

Everything is recomputed from the per-clip predictions table (``predictions.csv``) alone: one row
per test clip with ``dataset, subject, clip, fold, seed`` and, per AU, ``AUxx_prob`` (score),
``AUxx_pred`` (0/1 decision, the threshold policy already applied by the protocol) and
``AUxx_true`` (0/1 label). Decisions are read as given, never re-thresholded here.

Two F1 conventions are reported side by side and always labelled: **binary F1** (positive class)
and **"macro" F1** (mean of positive- and negative-class F1, AU-LLM's convention). "Pooled" metrics
concatenate the test clips of all folds of one seed and compute each AU's metric once; "fold mean"
metrics are computed per fold and averaged over the folds where they are defined. See
:mod:`au_llm.metrics` for the degenerate cases.

Modules: :mod:`.tables` (metric tables, metric files, headline table), :mod:`.plots` (PNG plots),
:mod:`.markdown` (``report.md``), :mod:`.answers` (text answers), :mod:`.explanations`
(faithfulness of generated explanations) and :mod:`.rebuild` (every output of a run directory
rebuilt from its finished folds).
"""
