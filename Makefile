# Every target creates the virtualenv and installs the project first: a fresh clone needs
# nothing but python3 (3.10+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo ui test test-fast stop clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m replication.demo run

ui: $(STAMP)
	$(BIN)/python -m replication.demo ui

test: $(STAMP)
	$(BIN)/python -m pytest

stop: $(STAMP)
	$(BIN)/python -m replication.demo stop

clean: stop
	rm -rf .local
