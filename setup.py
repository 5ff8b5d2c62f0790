"""Package layout that pyproject.toml cannot express.

The experiment configurations live in the repository's top-level ``configs/`` folder (where users
look for them) and are installed as the package ``au_llm.configs`` (so an installed wheel finds
them with ``importlib.resources``, from any folder). Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["au_llm*"]), "au_llm.configs"],
    package_dir={"au_llm.configs": "configs"},
)
