"""``au-llm predict``: a deployed model (:mod:`au_llm.deployed`) applied to new inputs.

:mod:`~au_llm.predict.config` holds the validated options; :mod:`~au_llm.predict.scorer` runs the
model on batches of aligned clips; :mod:`~au_llm.predict.manifests` predicts the annotated clips
of manifests (one row per clip) and :mod:`~au_llm.predict.recordings` scans videos and frame
folders with sliding windows (one row per window and face); :mod:`~au_llm.predict.failures`
records what failed; :mod:`~au_llm.predict.run` writes the CSVs of many inputs.
"""
