# hessian_nb: the two commands a newcomer needs are `make book` and `make test` (see README.md).
SHELL   := /bin/bash
PYTHON  ?= python3
# The oldest Python that every pin in requirements.txt supports (tests/test_packaging.py checks it against their metadata).
PYTHON_MIN := 3.11
VENV    := .venv
BIN     := $(VENV)/bin
# Every pip call goes through constraints.txt: torch stays at the tested pin, whatever a package asks for.
PIP     := $(BIN)/python -m pip install --quiet --constraint constraints.txt
# The browser that tests/test_book.py drives: `make test CHROMIUM=/path/to/chromium` for another one.
CHROMIUM ?= /usr/bin/chromium
# Fashion-MNIST's IDX files come from the Debian package dataset-fashion-mnist; HESSIAN_NB_FASHION_MNIST=/folder (in the
# environment or on the command line) names another copy, and reaches the notebooks and tests from there.
export CHROMIUM
ROOT    := $(filter 0,$(shell id -u))

.PHONY: book test nbtest realization sync pytest lab bench assets clean prereqs check-prereqs package-check

# What each command needs from the machine, checked (scripts/check-prereqs) before any of them does any work; each thing
# missing is reported with the command that fixes it. `make check-prereqs` checks all of them.
NEEDS_book          := python npm fashion-mnist
NEEDS_test          := python npm chromium fashion-mnist
NEEDS_nbtest        := python fashion-mnist
NEEDS_realization   := python fashion-mnist
NEEDS_pytest        := python chromium fashion-mnist
NEEDS_sync          := python
NEEDS_lab           := python fashion-mnist
NEEDS_bench         := python
NEEDS_assets        := npm
NEEDS_package-check := python
NEEDS_check-prereqs := python npm chromium fashion-mnist
NEEDS := $(sort $(foreach g,$(or $(MAKECMDGOALS),default),$(or $(NEEDS_$(g)),python)))
prereqs:
	@PYTHON=$(PYTHON) PYTHON_MIN=$(PYTHON_MIN) CHROMIUM=$(CHROMIUM) scripts/check-prereqs $(NEEDS)
check-prereqs: prereqs
	@echo "all prerequisites found: $(NEEDS)"

# Progress bars stay quiet in the tests, the book build and the benchmarks; `make lab` keeps them.
book test nbtest realization pytest bench: export HESSIAN_NB_QUIET := 1

# The environment: exactly the pinned toolchain, plus this package in editable mode. torch is installed first and WITH its
# dependencies (from the public index, torch==2.13.0 is the CUDA build and needs its nvidia-* wheels); the rest with
# --no-deps (see requirements.txt); constraints.txt keeps every step from replacing torch.
$(VENV)/.installed: requirements.txt constraints.txt setup.py settings.ini | prereqs
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch
	$(PIP) --no-deps -r requirements.txt
	$(PIP) --no-deps -e .
	$(BIN)/python -c 'import torch; torch.ones(1)' || { echo "torch does not import in $(VENV): rm -rf $(VENV) and run make again"; exit 1; }
	touch $@

# JavaScript the book serves itself (offline): MathJax and the Jupyter widgets embedder, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json | prereqs
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

# A realization of the experiments (nbs/running.md): HESSIAN_NB_SEED_OFFSET=k moves every seed, ATEN_CPU_CAPABILITY picks
# torch's CPU kernels (default|avx2|avx512). The default one builds into _build/html; any
# other one into _build/realizations/<name>/_build/html, with its own executed notebooks (and, by its cache keys, runs).
REALIZATION := $(strip $(if $(filter-out 0,$(HESSIAN_NB_SEED_OFFSET)),seed$(HESSIAN_NB_SEED_OFFSET))$(if $(ATEN_CPU_CAPABILITY),-$(ATEN_CPU_CAPABILITY)))
BOOK_OUT    := $(if $(REALIZATION),_build/realizations/$(REALIZATION),.)

# The book, built from nbs/ into _build/html; any notebook error or Sphinx warning fails the build. Building it executes
# every chapter once, top to bottom, with every assertion: it is the notebook test of the default realization.
book: $(VENV)/.installed _vendor/.assets | prereqs
	$(BIN)/jupyter-book build . -W --keep-going --path-output $(BOOK_OUT)

# Every test: the library in sync with the notebooks; the book (every chapter executed once, with every assertion) and,
# beside it on the other core, every chapter again under another realization (portable kernels and a seed shift); then
# pytest (bad input, the book in a browser). Both builds run on one thread each (OMP_NUM_THREADS=1: with torch's default
# pool each, the small many-step loops of a chapter ran tens of times slower), so they share the two cores.
test: sync
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 book realization REALIZATION_WORKERS=1
	$(MAKE) --no-print-directory pytest

# The chapters that train or draw at random, under a second realization, in a cache of their own: CPU kernels without
# SIMD and the seed offset 1. (The other chapters check identities to rounding: the book build runs them.)
REALIZATION_WORKERS ?= 2
REALIZATION_CHAPTERS ?= ^(index|02_|03_|04_|05_|06b_|06c_|07_|08_|10_)
realization: $(VENV)/.installed
	ATEN_CPU_CAPABILITY=default HESSIAN_NB_SEED_OFFSET=1 HESSIAN_NB_CACHE=$(CURDIR)/.cache/realization-seed1-default \
	  OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers $(REALIZATION_WORKERS) --timing --file_re '$(REALIZATION_CHAPTERS)'

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

# JupyterLab on the chapters. Every save goes through nbdev_clean's rules (_ext/lab_config.py), so opening and running a
# chapter leaves it as git has it: no outputs, no kernel or language metadata. Any other JupyterLab option goes
# in LAB_ARGS, e.g. `make lab LAB_ARGS="--port 8890 --no-browser"`. JupyterLab refuses to run as root without
# --allow-root (a container, a CI machine): given only there.
LAB_ARGS ?=
lab: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir nbs --config=_ext/lab_config.py$(if $(ROOT), --allow-root) $(LAB_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/dense_hessian.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/gauss_newton.py
	$(BIN)/python bench/spectrum.py
	$(BIN)/python bench/class_structure.py

# The wheel, installed into a clean venv outside the checkout, imports and runs the README's examples; the README's install
# commands resolve a torch with its dependencies from the public index (dry run). See .ci/package-check.
package-check: $(VENV)/.installed
	PYTHON=$(PYTHON) .ci/package-check

clean:
	rm -rf _build _vendor
