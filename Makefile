# Tendril — every target creates .venv and installs the project first when needed, so each
# one works on a fresh clone with nothing but Python 3.11+ (`make run-worker`, `make test`).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# NOTE: torch is installed first and pinned: an unpinned torch resolves to a CUDA build and
# pulls gigabytes of CUDA libraries (the machine's pip config may cap versions further).
TORCH ?= torch==2.13.0

.PHONY: venv run-worker test proto proto-check lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tendril needs Python 3.11 or newer; set PY=/path/to/python3.11")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[dev,train]'
	touch $(STAMP)

# A worker with an embedded gateway on the default ports; Ctrl-C stops it.
# Pass options through ARGS, e.g. make run-worker ARGS="--config worker.toml --set worker.port_offset=100"
run-worker: $(STAMP)
	$(BIN)/tendril worker run $(ARGS)

# NOTE: pytest exits 5 when it collected no tests; that must fail loudly, never pass quietly.
test: $(STAMP)
	@status=0; $(BIN)/python -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "ERROR: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$status

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

proto-check: $(STAMP)
	$(BIN)/python scripts/proto_check.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint

demo: $(STAMP)
	$(BIN)/python -m tendril.services.scheduler.demo $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
