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

# The local demo: for now the bundled TF Serving-compatible backend on generated example models
# (REST on 8501, gRPC on 8500); the full local stack (Envoy, daemon, agents) replaces it as it lands.
DEMO_DIR ?= .tfscache/demo
demo: $(STAMP)
	test -f $(DEMO_DIR)/models.config || $(BIN)/python -m tfscachectl.modelgen $(DEMO_DIR)/models \
		--tenants 20 --model-config $(DEMO_DIR)/models.config
	$(BIN)/tfscachectl tf-serving --port=8500 --rest_api_port=8501 --listen_address=127.0.0.1 \
		--model_config_file=$(DEMO_DIR)/models.config

# The node agent's gRPC API: regenerate its Python modules (next to the .proto) after editing the .proto.
AGENT_PROTO := tfscachectl/agent/api/agent.proto
protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. $(AGENT_PROTO)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
