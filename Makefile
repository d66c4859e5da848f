# Front-door commands (see README):
#   make demo   - set up .venv on first use, then run the whole demo pipeline
#   make test   - set up .venv on first use, then run the test suite
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.mmaff-installed

.PHONY: demo test env clean-demo

env: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/tests.txt setup.cfg setup.py
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -r requirements/runtime.txt
	$(VPY) -m pip install -q -r requirements/tests.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) tools/run_pipeline.py configs/demo/pipeline_affinitynet_r18-d8_demo.py

test: $(STAMP)
	$(VPY) -m pytest tests projects

clean-demo:
	rm -rf data/demo work_dirs/demo
