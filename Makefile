# One target per habit. `make test` sets everything up on a fresh machine first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint fmt unit integration demo bench clean protos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration

# The main job on this machine: Envoy, the daemon, 2 node agents and 2 serving backends on example models
# (generated on first run), REST on 8501 and gRPC on 8500. Ctrl-C stops it. Options: make demo UP_ARGS='...'.
UP_ARGS ?=
demo: $(STAMP)
	$(BIN)/tfscachectl up $(UP_ARGS)

# Side-by-side measurements on this machine (bench/RESULTS.md, committed): installs h2load and nginx first
# (apt-get, when missing). Options: make bench BENCH_ARGS='--duration 10 --only a,b'.
BENCH_ARGS ?=
bench: $(STAMP)
	bench/tools.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The node agent's gRPC API: regenerate its Python modules (next to the .proto) after editing the .proto.
AGENT_PROTO := tfscachectl/agent/api/agent.proto
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. $(AGENT_PROTO)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
