# hessian_nb: the two commands a newcomer needs are `make book` and `make test` (see README.md).
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
export HESSIAN_NB_QUIET := 1

.PHONY: book test nbtest sync pytest lab bench assets clean

# The environment: exactly the pinned toolchain, plus this package in editable mode.
$(VENV)/.installed: requirements.txt setup.py settings.ini
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "hessian_nb needs Python >= 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# JavaScript the book serves itself (offline): MathJax and the Jupyter widgets embedder, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# They go to _vendor/ (copied into the book's _static/ by Sphinx), not to a root _static/ folder: Jupyter Book would add
# every .js file found there to every page.
_vendor/.assets: node_modules/.installed
	rm -rf _vendor && mkdir -p _vendor/widgets
	cp -r node_modules/mathjax/es5 _vendor/mathjax
	cp node_modules/requirejs/require.js _vendor/widgets/require.js
	cp node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js _vendor/widgets/
	touch $@
assets: _vendor/.assets

# The book, built from nbs/ into _build/html; any notebook error or Sphinx warning fails the build.
book: $(VENV)/.installed _vendor/.assets
	$(BIN)/jupyter-book build . -W --keep-going

# Every test: the notebooks, the library in sync with them, the book, then pytest (bad input, the book in a browser).
test: sync nbtest book pytest

# Two notebooks at a time, one thread each: two processes with torch's default thread pools on two cores oversubscribe them,
# and the small, many-step training loops then run tens of times slower (OpenMP threads waiting on descheduled peers).
nbtest: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2

# nbdev_export and nbdev_clean must change nothing: the library and the notebooks agree.
sync: $(VENV)/.installed
	@before="$$(git status --porcelain)"; $(BIN)/nbdev_export && $(BIN)/nbdev_clean; \
	after="$$(git status --porcelain)"; \
	if [ "$$before" != "$$after" ]; then git status --short; echo "nbdev_export/nbdev_clean changed files: run them and commit"; exit 1; fi

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest tests -q

lab: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir nbs

bench: $(VENV)/.installed
	$(BIN)/python bench/dense_hessian.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/gauss_newton.py
	$(BIN)/python bench/spectrum.py
	$(BIN)/python bench/class_structure.py

clean:
	rm -rf _build _vendor
