"""au-llm: facial Action Unit detection in micro-expression videos (AU-LLM, Liu et al., 2025).

Data flows one way: annotation file -> manifest (:mod:`au_llm.data`) -> aligned clip cache
(:mod:`au_llm.preprocess`) -> backbone -> fusion projector -> LLM -> AU scores
(:mod:`au_llm.model`) -> metrics and reports (:mod:`au_llm.metrics`, :mod:`au_llm.reports`).
"""

__version__ = "0.1.0"
