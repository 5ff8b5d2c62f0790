"""The recipes: the ``au-llm`` commands, the demos and the run lifecycle.

Each recipe unpacks the :class:`~au_llm.config.ExperimentConfig` (or its command-line options) and
calls the library with the sections or plain values it uses. The library never imports a recipe
(``tests/test_recipes.py``).
"""
