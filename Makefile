# `make demo`: set up and run the offline demo.  `make test`: set up, lint and run the tests (what CI runs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAMPLES ?= $(abspath ../shared/videos)
# Real material beside the checkout, when there (tests that need it skip, saying why, without it):
# torchvision's ImageNet MobileNetV2 checkpoint, copied into a TORCH_HOME of the tests' own so that
# `--backbone-weights imagenet` runs offline with its hash check, and real UCF101 clips.
WEIGHTS ?= $(abspath ../shared/weights)
REAL_CLIPS ?= $(abspath ../shared/real/ucf101-6)
WEIZMANN_CLIPS ?= $(abspath ../shared/real/weizmann-7)
TEST_TORCH_HOME ?= $(abspath .test-torch)
CHECKPOINT := mobilenet_v2-b0353104.pth
ifneq ($(wildcard $(WEIGHTS)/$(CHECKPOINT)),)
TEST_TORCH_HOME_ENV := TORCH_HOME=$(TEST_TORCH_HOME)
endif

.PHONY: setup setup-ray demo lint test test-fast test-weights browser docs fuzz loadtest clean

setup: $(VENV)/.installed

# Ray (the `ray` extra) for the tests of its pipelines; the demo does not need it.
setup-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[ray]'
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[serve,train,test,hub,docs,people]'
	touch $@

# Debian's Chromium for the browser test (skipped, with a reason, where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

demo: setup
	$(VENV)/bin/actionrec demo

# The checkpoint goes where torch.hub looks for it, after its SHA-256 is checked.
test-weights:
	@if [ -f "$(WEIGHTS)/$(CHECKPOINT)" ] && [ ! -f "$(TEST_TORCH_HOME)/hub/checkpoints/$(CHECKPOINT)" ]; then \
	  (cd "$(WEIGHTS)" && sha256sum --quiet --ignore-missing -c SHA256SUMS) && mkdir -p "$(TEST_TORCH_HOME)/hub/checkpoints" && \
	  cp "$(WEIGHTS)/$(CHECKPOINT)" "$(TEST_TORCH_HOME)/hub/checkpoints/"; fi

# The documentation site, built strictly (a broken link or a missing page fails it) into site/.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Lint and import order (ruff) over the code and tests, and the type check of src/ (mypy); the
# settings of both are in pyproject.toml (mypy reads Ray's types, hence setup-ray). `ruff check --fix`
# puts imports in order.
lint: setup setup-ray
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

test: setup setup-ray lint browser test-weights docs
	ACTIONREC_SAMPLE_VIDEOS=$${ACTIONREC_SAMPLE_VIDEOS:-$(if $(wildcard $(SAMPLES)),$(SAMPLES),)} \
	ACTIONREC_REAL_CLIPS=$${ACTIONREC_REAL_CLIPS:-$(if $(wildcard $(REAL_CLIPS)),$(REAL_CLIPS),)} \
	ACTIONREC_WEIZMANN_CLIPS=$${ACTIONREC_WEIZMANN_CLIPS:-$(if $(wildcard $(WEIZMANN_CLIPS)),$(WEIZMANN_CLIPS),)} \
	$(TEST_TORCH_HOME_ENV) $(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser and not server"

# The long runs of the hardening suites (a bounded run of each is part of `make test`).
N ?= 10000
fuzz: setup
	ACTIONREC_SAMPLE_VIDEOS=$${ACTIONREC_SAMPLE_VIDEOS:-$(if $(wildcard $(SAMPLES)),$(SAMPLES),)} \
	  $(PY) -m actionrec.testing.fuzz --count $(N)

loadtest: setup
	$(PY) -m actionrec.testing.loadtest --requests 2000 --concurrency 32 --slow 100 --idle 1000

clean:
	rm -rf $(VENV) demo artifacts .pytest_cache .ruff_cache .mypy_cache fuzz-findings .test-torch site
