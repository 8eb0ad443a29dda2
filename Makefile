# Every target creates the virtualenv and installs the project first: a fresh clone needs
# nothing but python3 (3.10+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo ui test bench stop clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Library warnings (XDG_RUNTIME_DIR and the like) say nothing to a demo user.
demo: $(STAMP)
	@PYTHONWARNINGS=ignore $(BIN)/python -m replication.demo run

ui: $(STAMP)
	$(BIN)/python -m replication.demo ui

test: $(STAMP) browser
	$(BIN)/python -m pytest

# Ours vs psql (plain and pg_restore order) vs pandas, one run, alternating; BENCH_ARGS="--rows 4000000".
bench: $(STAMP)
	PYTHONWARNINGS=ignore $(BIN)/python benchmarks/fanout.py $(BENCH_ARGS)

# The UI test drives a real Chromium from the system's packages (never a browser download).
# Installed here when missing and we may (root with apt-get); otherwise that one test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "Chromium is not installed and cannot be installed here: the browser test will skip."

stop: $(STAMP)
	$(BIN)/python -m replication.demo stop

clean: stop
	rm -rf test-artifacts
	rm -rf .local
