# samq: one machine, nothing installed. `make run` to serve, `make test` to test.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.samq-installed
PRESET ?=

.PHONY: setup run test test-unit test-deploy test-integration test-fault test-fault-long lint docs models bench clean

# torch/torchvision first, pinned (they come from local disk on our machines), then samq, then sam2
# without build isolation so it builds against that torch (no CUDA extension needed).
$(STAMP): pyproject.toml client/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -q -e '.[worker,dev]'
	$(VENV)/bin/pip install -q -e ./client
	SAM2_BUILD_CUDA=0 $(VENV)/bin/pip install -q --no-build-isolation sam2==1.1.0
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/samq run

test: setup
	bash tests/ensure_redis.sh
	$(PY) -m pytest tests -p no:cacheprovider -m "not slow" --durations=20

test-unit: setup
	bash tests/ensure_redis.sh
	$(PY) -m pytest tests/unit

# The deployment files through their tools: kubectl kustomize renders the overlays, sh parses a script.
test-deploy: setup
	$(PY) -m pytest tests/deploy

test-integration: setup
	bash tests/ensure_redis.sh
	$(PY) -m pytest tests/integration

test-fault: setup
	bash tests/ensure_redis.sh
	$(PY) -m pytest tests/fault -m "not slow"

# The long modes (20 SIGKILL trials, ...): figures for docs/RELIABILITY.md.
test-fault-long: setup
	bash tests/ensure_redis.sh
	$(PY) -m pytest tests/fault -m slow -s

# ruff, mypy (shared/, worker/ and gateway/: [tool.mypy] in pyproject.toml), then the deployment files with their
# own tools, offline (deploy/validate.py says what it checks).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) deploy/validate.py

# The generated tables of docs/API.md and docs/OPERATIONS.md, from the pydantic models, errors and settings.
docs: setup
	$(PY) -m gateway.docgen

models: setup
	$(VENV)/bin/samq models download $(if $(PRESET),--preset $(PRESET))

bench: setup
	bash tests/ensure_redis.sh
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
