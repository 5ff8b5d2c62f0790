#!/usr/bin/env bash
# Pure-Python wheels that bench/gpu_check.py needs on a GPU machine without network access and
# without them installed (omegaconf and its parser runtime), downloaded here into .whl/ (about
# 0.3 MB) to be carried along. On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OMEGACONF=$($PYTHON -c 'import omegaconf; print(omegaconf.__version__)')
ANTLR=$($PYTHON -c 'from importlib.metadata import version; print(version("antlr4-python3-runtime"))')
rm -rf .whl
$PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --dest .whl \
  "omegaconf==$OMEGACONF"
# antlr4-python3-runtime 4.9.x is published as a source archive only: build its wheel here.
$PYTHON -m pip wheel -q --no-deps --wheel-dir .whl "antlr4-python3-runtime==$ANTLR"
ls -l .whl
