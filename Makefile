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

lint: venv
	$(VPY) -m ruff check .

test: prepare lint
	$(VPY) -m pytest tests

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
