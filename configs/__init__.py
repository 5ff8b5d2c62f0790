"""Experiment configurations (YAML), installed with the package as ``au_llm.configs``."""
