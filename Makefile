# The two set-up commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PORT ?= 8188
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: venv prepare test unit integration demo serve lint clean

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

test: prepare lint
	$(VPY) -m pytest tests --durations=20

unit: prepare
	$(VPY) -m pytest tests/unit

integration: prepare
	$(VPY) -m pytest tests/integration

demo: prepare
	$(VPY) -m tools.runtime demo

serve: prepare
	$(VPY) -m tools.runtime serve --port $(PORT)

clean:
	rm -rf .comfy out
