# `make demo`: set up and run the offline demo.  `make test`: set up and run the tests (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAMPLES ?= $(abspath ../shared/videos)

.PHONY: setup setup-ray demo test test-fast browser fuzz loadtest clean

setup: $(VENV)/.installed

# Ray (the `ray` extra) for the tests of its pipelines; the demo does not need it.
setup-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[ray]'
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[serve,train,test]'
	touch $@

# Debian's Chromium for the browser test (skipped, with a reason, where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

demo: setup
	$(VENV)/bin/actionrec demo

test: setup setup-ray browser
	ACTIONREC_SAMPLE_VIDEOS=$${ACTIONREC_SAMPLE_VIDEOS:-$(if $(wildcard $(SAMPLES)),$(SAMPLES),)} \
	  $(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

# The long runs of the hardening suites (a bounded run of each is part of `make test`).
N ?= 10000
fuzz: setup
	ACTIONREC_SAMPLE_VIDEOS=$${ACTIONREC_SAMPLE_VIDEOS:-$(if $(wildcard $(SAMPLES)),$(SAMPLES),)} \
	  $(PY) -m actionrec.testing.fuzz --count $(N)

loadtest: setup
	$(PY) -m actionrec.testing.loadtest --requests 2000 --concurrency 32 --slow 100 --idle 1000

clean:
	rm -rf $(VENV) demo artifacts .pytest_cache fuzz-findings
