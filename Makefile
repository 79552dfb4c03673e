# `make demo`: set up and run the offline demo.  `make test`: set up and run the tests (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAMPLES ?= $(abspath ../shared/videos)

.PHONY: setup demo test test-fast browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,test]'
	touch $@

# Debian's Chromium for the browser test (skipped, with a reason, where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

demo: setup
	$(VENV)/bin/actionrec demo

test: setup browser
	ACTIONREC_SAMPLE_VIDEOS=$${ACTIONREC_SAMPLE_VIDEOS:-$(if $(wildcard $(SAMPLES)),$(SAMPLES),)} \
	  $(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

clean:
	rm -rf $(VENV) demo artifacts .pytest_cache
