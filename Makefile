# Two commands: `make test` and `make reproduce PROFILE=cpu`. Both build .venv on first use.
PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= cpu
# A pinned torch that these machines serve from a local wheel cache; timm needs the
# matching torchvision. Where the base Python already has torch (Colab, a conda env),
# the venv reuses it instead of installing another copy.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
HAVE_TORCH := $(shell $(PYTHON) -c "import torch, torchvision" >/dev/null 2>&1 && echo yes)
VENV_FLAGS := $(if $(HAVE_TORCH),--system-site-packages,)
PY := $(VENV)/bin/python

.PHONY: install test reproduce smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch, torchvision" >/dev/null 2>&1 || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test: install
	$(PY) -m pytest tests
	LOMIX_HEADLESS=1 LOMIX_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env notebooks

reproduce: install
	$(PY) -m lomix_core reproduce --profile $(PROFILE)

smoke:
	$(MAKE) reproduce PROFILE=smoke

clean:
	rm -rf outputs .pytest_cache
