# memrec: the two commands a fresh clone needs are `make repro` and `make test` (see README.md).
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
PY    := $(BIN)/python
STAMP := $(VENV)/.installed
# table/figure notebooks need pipeline results: they are executed by `dvc repro` (tables stage)
# and by tests/test_pipeline.py, not by nbdev_test
NB_SKIP := ^(table|figure|ablation_|videolstm_|rlstm_|tattn_|claims)

.PHONY: venv repro test test-nbs pytest export clean-nbs bench

venv: $(STAMP)
$(STAMP): requirements.txt setup.py settings.ini
	@# RAR extraction of UCF101/HMDB51 archives needs bsdtar (libarchive-tools) or unar: install one if missing
	@command -v bsdtar >/dev/null || command -v unar >/dev/null || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libarchive-tools >/dev/null; } || \
	  echo "warning: install libarchive-tools (bsdtar) or unar to extract UCF101/HMDB51 archives"
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@# the optional `ray` extra (setup.py extras_require; same pin), so the tests cover runtime.executor: ray
	$(PY) -m pip install -q 'ray==2.60.0'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

# main job: every stage of dvc.yaml on the dataset named in params.yaml (default: the embedded `synth`)
repro: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

# the test command (.ci/run runs this): clean notebooks, export in sync, notebook tests, integration tests
test: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(PY) .ci/check_nbdev.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/nbdev_test --n_workers 2 --skip_file_re '$(NB_SKIP)'
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q -n 2 --dist loadgroup --durations 15 tests

export: venv
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export
