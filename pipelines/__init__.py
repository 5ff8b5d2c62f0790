"""Runnable protocols: ``python -m pipelines.loso|cross|demo``, the same as ``au-llm ...``.

Each script hands its arguments to :func:`au_llm.cli.main`, so both entry points share one
argument parser and one error handling. The recipe itself (manifests -> aligned clips -> folds ->
training -> report) is :func:`au_llm.protocol.run_protocol`.
"""
