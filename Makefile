# The two set-up commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PORT ?= 8188
TORCH := torch==2.14.1 torchvision==0.29.1
# The newest ComfyUI (a source snapshot beside the repository, ../shared/comfyui/) in a second environment:
# it imports torchaudio, whose newest release needs torch 2.11 (a CUDA build from PyPI; it runs on the CPU)
NEWEST_TAR := $(wildcard ../shared/comfyui/ComfyUI-0.33.0.tar.gz)
NEWEST_DIR := .comfy-newest/ComfyUI-0.33.0
NVENV := .venv-newest
NPY := $(NVENV)/bin/python
NEWEST_TORCH := torch==2.11.0 torchaudio==2.11.0 torchvision==0.26.0

.PHONY: venv prepare test unit integration test-newest registry-check demo serve lint clean

$(VENV)/.installed: requirements-dev.txt requirements.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(TORCH)
	$(VPY) -m pip install -q -r requirements-dev.txt -r requirements.txt
	touch $@

venv: $(VENV)/.installed

prepare: venv
	$(VPY) -m tools.runtime prepare

# vermin: the shipped pack must import on Python 3.10, the oldest ComfyUI supports (tools and tests run on 3.11)
lint: venv
	$(VPY) -m ruff check .
	$(VENV)/bin/vermin --no-tips --violations --eval-annotations -t=3.10- __init__.py nodes accel_core kernels

test: prepare lint registry-check
	$(VPY) -m pytest tests --durations=20
	$(MAKE) test-newest

# the Comfy Registry's own validator (comfy-cli from PyPI, in an environment of its own) on pyproject.toml;
# it prints problems as warnings and still exits 0, so any warning fails the check here
RVENV := .venv-registry
$(RVENV)/.installed:
	test -x $(RVENV)/bin/python || $(PYTHON) -m venv $(RVENV)
	$(RVENV)/bin/python -m pip install -q comfy-cli==1.23.0 ruff
	touch $@

registry-check: $(RVENV)/.installed
	$(RVENV)/bin/comfy --skip-prompt --no-enable-telemetry node validate > $(RVENV)/validate.log 2>&1; \
		status=$$?; cat $(RVENV)/validate.log; test $$status -eq 0
	! grep -qi "warning\|error" $(RVENV)/validate.log
	grep -q "passed successfully" $(RVENV)/validate.log

$(NEWEST_DIR)/main.py: $(NEWEST_TAR)
	mkdir -p .comfy-newest
	tar -xzf $(NEWEST_TAR) -C .comfy-newest
	touch $@

$(NVENV)/.installed: $(NEWEST_DIR)/main.py requirements-dev.txt
	test -x $(NPY) || $(PYTHON) -m venv $(NVENV)
	$(NPY) -m pip install -q --upgrade pip
	$(NPY) -m pip install -q $(NEWEST_TORCH)
	printf '%s\n' $(NEWEST_TORCH) > $(NVENV)/pins.txt
	$(NPY) -m pip install -q -r $(NEWEST_DIR)/requirements.txt -c $(NVENV)/pins.txt
	$(NPY) -m pip install -q pytest pytest-timeout websocket-client playwright -c $(NVENV)/pins.txt
	touch $@

# the server tests again on the newest ComfyUI, and the browser tests in its web UI (headless Chromium:
# Debian's chromium package, driven by Playwright); skipped, and said so, without the snapshot
test-newest:
ifeq ($(NEWEST_TAR),)
	@echo "test-newest: skipped, ../shared/comfyui/ComfyUI-0.33.0.tar.gz is not there (the newest-ComfyUI leg)"
else
	$(MAKE) $(NVENV)/.installed
	COMFYUI_PATH=$(abspath $(NEWEST_DIR)) $(NPY) -m tools.runtime prepare
	COMFYUI_PATH=$(abspath $(NEWEST_DIR)) $(NPY) -m pytest tests/integration tests/browser --durations=10
endif

unit: prepare
	$(VPY) -m pytest tests/unit

integration: prepare
	$(VPY) -m pytest tests/integration

demo: prepare
	$(VPY) -m tools.runtime demo

# ComfyUI as a user runs it: its web UI (the newest ComfyUI's environment has the frontend package), its cache on
serve: prepare
ifeq ($(NEWEST_TAR),)
	$(VPY) -m tools.runtime serve --port $(PORT)
else
	$(MAKE) $(NVENV)/.installed
	COMFYUI_PATH=$(abspath $(NEWEST_DIR)) $(NPY) -m tools.runtime serve --port $(PORT)
endif

clean:
	rm -rf .comfy .comfy-newest out
