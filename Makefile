# Two commands: `make run` (set up and run the main job) and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
#
# PyTorch is pinned to the CPU build by default. On a GPU machine, override it:
#   make run TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EXTRAS ?= dev
CONFIG ?= examples/quickstart.toml
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench clean verl-env test-verl

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned, so no later requirement pulls a different build
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/thresher run $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# verl pins transformers < 5.11, so the real verl lives in its own venvs, one per
# interface: 0.7.1 (the last with data.sampler.class_path) and 0.9.1
# (RayPPOTrainer(train_sampler=...)). `make test-verl` runs tests/real_verl/ in both.
VERL_VERSIONS ?= 0.7.1 0.9.1
VERL_EXTRAS_0.9.1 := [verl-core]
# verl 0.7.1 pins numpy < 2, while today's pyarrow (>= 21) needs numpy 2 and datasets >= 4 needs
# that pyarrow: hold both back so `import verl` works
VERL_PINS_0.7.1 := "numpy<2" "pyarrow<21" "datasets<4"

# verl 0.7.1 pins numpy < 2 (thresher asks numpy >= 2 but runs on 1.26): verl goes in first,
# its resolved versions are frozen as constraints, and thresher is added with --no-deps
# plus its remaining requirements under those constraints.
THRESHER_DEPS := polars pyarrow duckdb scipy scikit-learn datasketch math-verify xxhash imagehash pillow pydantic rich

.venv-verl-%/.installed: pyproject.toml Makefile
	test -x .venv-verl-$*/bin/python || $(PYTHON) -m venv .venv-verl-$*
	.venv-verl-$*/bin/python -m pip install -q --upgrade pip
	.venv-verl-$*/bin/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	.venv-verl-$*/bin/python -m pip install -q "verl$(VERL_EXTRAS_$*)==$*" $(VERL_PINS_$*) "$(TORCH_SPEC)" pytest $(TORCH_PIP_ARGS)
	.venv-verl-$*/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > .venv-verl-$*/verl-pins.txt
	.venv-verl-$*/bin/python -m pip install -q -c .venv-verl-$*/verl-pins.txt $(THRESHER_DEPS)
	.venv-verl-$*/bin/python -m pip install -q --no-deps -e .
	touch $@

verl-env: $(foreach v,$(VERL_VERSIONS),.venv-verl-$(v)/.installed)

test-verl: verl-env
	set -e; for v in $(VERL_VERSIONS); do \
	  echo "== verl $$v"; HF_HUB_OFFLINE=1 .venv-verl-$$v/bin/python -m pytest -q -p no:cacheprovider tests/real_verl $(PYTEST_ARGS); \
	done

clean:
	rm -rf $(VENV) .venv-verl-* runs .pytest_cache
