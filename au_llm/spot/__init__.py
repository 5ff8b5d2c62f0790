"""Spotting expressions in long recordings, then naming their AUs (``au-llm spot``).

:mod:`~au_llm.spot.intervals` defines an interval and its kind (micro or macro);
:mod:`~au_llm.spot.evaluate` scores spotted intervals against annotated ones (MEGC rules);
:mod:`~au_llm.spot.peaks` turns a per-frame score into intervals (the MEGC baselines' peak rule);
:mod:`~au_llm.spot.config` holds the spotter's settings; :mod:`~au_llm.spot.run` is ``au-llm
spot`` on a user's recordings and :mod:`~au_llm.spot.protocol` one fold of the MEGC evaluation
(``protocol: megc``).
"""
