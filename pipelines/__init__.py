"""Runnable protocols: thin scripts over the ``au_llm`` library (``python -m pipelines.loso``)."""
