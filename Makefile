# Social-insurance backend: gateway, four services and the platform sandbox.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export SOCIALSEC_VAR_DIR ?= $(CURDIR)/var

.PHONY: run test lint fuzz migrate openapi token install clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## run: install, create development keys, migrate, start every process (Ctrl-C stops them all)
run: $(STAMP)
	$(PY) -m devtools.run

## test: install and run the whole suite (SQLite; PostgreSQL too when TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff, mypy, and the service boundaries (import-linter)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## fuzz: schemathesis (every check, fixed seed, bounded examples) against the gateway's merged document
## on a fresh stack, as a citizen, an employer and staff; fails on any finding (devtools/fuzz.py)
fuzz: $(STAMP)
	$(PY) -m devtools.fuzz

## migrate: upgrade every service database to the newest revision
migrate: $(STAMP)
	$(PY) -m devtools.keys "$(SOCIALSEC_VAR_DIR)" >/dev/null
	$(PY) -m services.common.migrate

## openapi: write openapi/<service>.json for each service and the gateway
openapi: $(STAMP)
	$(PY) -m devtools.openapi

## token: print a sandbox token, e.g. make token ARGS="--kind citizen --level 3"
token: $(STAMP)
	$(PY) -m devtools.token $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
