# Tendril — every target creates .venv and installs the project first when needed, so each
# one works on a fresh clone with nothing but Python 3.11+ (`make run-worker`, `make test`).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# NOTE: torch is installed first and pinned: an unpinned torch resolves to a CUDA build and
# pulls gigabytes of CUDA libraries (the machine's pip config may cap versions further).
TORCH ?= torch==2.13.0

.PHONY: venv run-worker test proto proto-check lint demo bench lab lab-clean clean node-deps proto-node node-check proto-go go-check buf-breaking

venv: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml kernels/pyproject.toml kernels/setup.py $(wildcard kernels/tendril_kernels/*.c kernels/tendril_kernels/*.py)
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tendril needs Python 3.11 or newer; set PY=/path/to/python3.11")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e ./clients/python ./kernels -e '.[dev,train]'
	touch $(STAMP)

# Node stubs and tools come from the npm registry (exact versions in package-lock.json).
NPM_DEPS := clients/node/node_modules/.package-lock.json
# NOTE: the Node client/executor tests need these; machines without npm skip those tests.
TEST_NODE_DEPS := $(if $(shell command -v npm),$(NPM_DEPS))

$(NPM_DEPS): clients/node/package.json clients/node/package-lock.json
	npm ci --prefix clients/node --ignore-scripts --no-audit --no-fund

node-deps: $(NPM_DEPS)

# A worker with an embedded gateway on the default ports; Ctrl-C stops it.
# Pass options through ARGS, e.g. make run-worker ARGS="--config worker.toml --set worker.port_offset=100"
run-worker: $(STAMP)
	$(BIN)/tendril worker run $(ARGS)

# NOTE: pytest exits 5 when it collected no tests; that must fail loudly, never pass quietly.
test: $(STAMP) $(TEST_NODE_DEPS)
	@status=0; $(BIN)/python -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "ERROR: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$status

# Regenerate the checked-in stubs: Python (clients/python) and Node (clients/node).
proto: $(STAMP) $(NPM_DEPS)
	$(BIN)/python scripts/gen_proto.py
	$(BIN)/python scripts/gen_node.py

# Fail when a checked-in stub differs from what `make proto` would write.
proto-check: $(STAMP) $(NPM_DEPS)
	$(BIN)/python scripts/proto_check.py
	$(BIN)/python scripts/node_check.py

proto-node: $(STAMP) $(NPM_DEPS)
	$(BIN)/python scripts/gen_node.py

node-check: $(STAMP) $(NPM_DEPS)
	$(BIN)/python scripts/node_check.py

# Go stubs need Debian's golang-go and protoc-gen-go(-grpc) packages (see .ci/run).
proto-go: $(STAMP)
	$(BIN)/python scripts/gen_go.py

go-check: $(STAMP)
	$(BIN)/python scripts/go_check.py

# buf breaking: the protos of the working tree against the previous commit of main.
buf-breaking: $(STAMP)
	bash scripts/buf_breaking.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint

demo: $(STAMP)
	$(BIN)/python -m tendril.scheduler.demo $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# A multi-host lab (root): every peer in its own network namespace over tbf-shaped links; trains a
# short DiLoCo run, prints rounds, loss, bytes and the measured link rate, removes everything.
# Options through ARGS, e.g. make lab ARGS="--workers 2 --rate 1000" (docs/WAN.md).
lab: $(STAMP)
	$(BIN)/python -m tendril.lab run $(ARGS)

# Remove what a killed lab left behind (namespaces tlab-*, links tlab*, their processes).
lab-clean: $(STAMP)
	$(BIN)/python -m tendril.lab clean $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
