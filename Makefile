# The Python and Kafka install steps live here: `make up` needs python3 (3.11+), java (17+), mvn and make.
# `make test` also needs go, node (20+) with npm, and chromium (`make browser`); on first use the tests
# install the Node and Go clients they run (tests/clients/install.sh) and validate.sh its k8s tools.
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: up test browser clean

$(BIN)/.installed: pyproject.toml sdk/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo 'eventpipe: installing dependencies into $(VENV) (first run only)'
	$(BIN)/python -m pip install --progress-bar on -e ./sdk -e '.[test]'
	touch $@

## Run broker + processor + collector locally (Ctrl-C stops all).
up: $(BIN)/.installed
	$(BIN)/eventpipe up

## Run the test suite against a real Kafka broker and chDB.
test: $(BIN)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

## Debian's chromium, for the dashboard's browser test (CI installs it too).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

clean:
	rm -rf $(VENV) .eventpipe .pytest_cache
