# make demo: install what is missing, build a small deterministic sample set, run a real batch on it.
# make test: install what is missing, then lint, type-check and run every test.
# Both are idempotent: a second run installs nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_TOOLS := samtools tabix bgzip gffread shellcheck cc
# pinned: 3.37 is the first to check a user-delegation SAS of the version azure-storage-blob 12.31 writes
AZURITE_VERSION := 3.37.0
AZURITE := .tools/node_modules/.azurite-$(AZURITE_VERSION)
# The readers JBrowse and IGV.js use, for tests/integration/test_browsers.py (versions pinned: their bytes decide)
READERS := .tools/node_modules/@gmod/cram/package.json
READER_PACKAGES := @gmod/bam@7.1.17 @gmod/cram@8.0.4 @gmod/tabix@3.3.9 @gmod/indexedfasta@5.0.2 generic-filehandle2@2.1.10
# The genome browsers the page `view --html` writes opens (tests/integration/test_view_browser.py serves
# these in place of the CDN builds; versions as pinned in preprocess/view.py). Gosling is an ES module
# whose preinstall insists on pnpm: installed without scripts, then bundled with its dependencies.
VIEWERS := .tools/browser/gosling.bundle.mjs
VIEWER_PACKAGES := igv@3.8.10 gosling.js@1.0.7 react@18.3.1 react-dom@18.3.1 pixi.js@6.5.10 higlass@1.13.6 \
	esbuild@0.28.2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test unit lint bench system browser clean

system:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	[ -e /usr/include/htslib/tbx.h ] || missing="$$missing libhts-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system tools:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq samtools tabix gffread gcc libc6-dev libhts-dev shellcheck >/dev/null; \
	fi

# headless Chromium screenshots the Dask dashboard in the tests (make test only; demo needs no browser)
browser:
	@command -v chromium >/dev/null || { echo "installing chromium"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# the build backend tests/integration/test_packaging.py builds the wheel and sdist with, offline
# (no test reaches the package index): pyproject.toml's [build-system] requires
WHEELHOUSE := .tools/wheelhouse/.ready
$(WHEELHOUSE): pyproject.toml | $(STAMP)
	$(PY) -m pip download -q --only-binary=:all: --no-deps -d $(@D) "setuptools>=77"
	touch $@

$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix .tools azurite@$(AZURITE_VERSION)
	touch $@

$(READERS): | $(AZURITE)
	npm install --silent --no-audit --no-fund --prefix .tools $(READER_PACKAGES)

$(VIEWERS):
	npm install --silent --no-audit --no-fund --ignore-scripts --prefix .tools/browser $(VIEWER_PACKAGES)
	echo 'export * from "gosling.js";' > .tools/browser/gosling-entry.mjs
	.tools/browser/node_modules/.bin/esbuild .tools/browser/gosling-entry.mjs --bundle --format=esm --minify \
	  --define:process.env.NODE_ENV='"production"' --log-level=error --outfile=$@

demo: system $(STAMP)
	@[ -f demo/manifest.csv ] || $(PY) -m tests.samples demo
	@# the row "broken" fails on purpose (exit 1), to show a failure; any other failure fails make demo
	$(PY) -m preprocess batch demo/manifest.csv --json demo/report.json || { rc=$$?; [ $$rc = 1 ] && \
	  $(PY) -c 'import json, sys; r = json.load(open("demo/report.json"))["results"]; \
	  sys.exit([x["id"] for x in r if x["status"] == "failed"] != ["broken"])' || exit $$rc; }

lint: system $(STAMP)
	$(VENV)/bin/ruff check preprocess pipelines tests benchmarks
	shellcheck pipelines/scripts/*.sh
	$(VENV)/bin/mypy preprocess pipelines
	$(VENV)/bin/lint-imports

test: system browser $(STAMP) $(AZURITE) $(READERS) $(WHEELHOUSE) $(VIEWERS) lint
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" $(VENV)/bin/pytest -q

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration"

# every case of issues 11 and 15 in one run (22 minutes here, the split group's 2 GB BAM included):
# medians of 3, ratios against the plain tools, written to benchmarks/data/results.json
bench: system $(STAMP)
	@$(PY) -c "import snakemake" 2>/dev/null || $(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf demo preprocess-store .pytest_cache .mypy_cache .ruff_cache
