# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv if needed and install everything first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# torch and torchvision must be a matched pair: torchvision's compiled operators only
# load against the torch build they were made for.
TORCH_PAIR := torch==2.14.1 torchvision==0.29.1
TORCHATTACKS := torchattacks==3.5.1
# RobustBench's own reader (robustbench/utils.py) for the test that reads our export with it:
# the package and what utils.py imports, each --no-deps, in a folder of its own (not on the
# venv's path: its model zoo and autoattack, a GitHub-only package, are never imported).
RB_READER_DIR := $(VENV)/robustbench-1.1.1
RB_READER := robustbench==1.1.1 timm==1.0.31 gdown==5.2.0 huggingface_hub==0.36.2 beautifulsoup4==4.15.0 \
             soupsieve==4.1.3
FMNIST_DEB := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test bench notebooks install data browser clean-venv

demo: install data
	$(PY) -m bench run --preset quick

test: install data browser
	$(PY) -m pytest -q tests

bench: install data
	$(PY) -m pytest -q tests/benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds

# Re-execute the study write-ups against results/ and store them with their outputs (after the
# results changed on purpose; tests/test_study_notebooks.py fails until then).
notebooks: install
	$(PY) docs/studies/execute.py --write

install: $(STAMP)

# Comments here, not in the recipe, so that make does not echo them to the user.
# - Empty find-links: ignore machine-local wheel folders (a CPU torch with no matching
#   torchvision); take the pinned pair from the package index.
# - torchattacks last, with --no-deps: it pins requests~=2.25.1 but never imports it. pip
#   skips its conflict check for --no-deps installs, but any later install that touches
#   torchattacks' dependencies (numpy, scipy, tqdm) re-checks it and prints a dependency-
#   resolver error line, so nothing may be installed after it.
# - The ray extra so that the tests run `run --executor ray` against a real local Ray.
# - RobustBench's reader into its own --target folder, --no-deps: no resolver check of the venv.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	PIP_FIND_LINKS= $(PIP) install -q $(TORCH_PAIR)
	$(PIP) install -q -e '.[test,ray]'
	$(PIP) install -q --no-deps --upgrade --target $(RB_READER_DIR) $(RB_READER)
	$(PIP) install -q --no-deps $(TORCHATTACKS)
	$(PY) -c "import torch, torchvision, torchattacks, foolbox, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $@

# apt_install PACKAGE, TEST, NOTE: install a Debian package unless TEST already holds, where
# apt works (as root or with password-less sudo); otherwise print NOTE and go on.
define apt_install
	@if ! $(2) && command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo "sudo -n" ); \
	  $$SUDO apt-get install -y -qq $(1) >/dev/null 2>&1 || \
	  ( $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq $(1) >/dev/null 2>&1 ) || \
	  echo "note: could not install $(1); $(3)"; \
	fi
endef

# Real Fashion-MNIST offline: Debian's dataset-fashion-mnist. Optional: tests build
# their own tiny files, and the CLI explains how else to get the data.
data:
	$(call apt_install,dataset-fashion-mnist,[ -f $(FMNIST_DEB) ],tests still run on generated files)

# Headless Chromium for the test that renders results/<preset>/index.html in a real
# browser. Optional: without it that one test is skipped.
browser:
	$(call apt_install,chromium,command -v chromium >/dev/null 2>&1,the browser test of the HTML report is skipped)

clean-venv:
	rm -rf $(VENV)
