# The two commands of the README. Both build .venv from the pinned files first (once).
#   make reproduce   run the whole default pipeline on the embedded synth data
#   make test        run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
CORES  ?= 2
# CORES decides only how many jobs run at once: each job's threads and CPU kernels come from
# params.yaml (numerics), so the numbers are the same whatever CORES is.
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: reproduce study study-data-seeds test test-slurm setup dag lint report push pull clean-venv

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(STAMP)

# After the DAG, `dvc commit` records the outputs in dvc.lock and DVC's cache (so `dvc status` and
# `make push` know them; on committed code and params the lock comes out unchanged), and, as it
# rewrites the files it caches, `snakemake --touch` marks them current again.
reproduce: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --printshellcmds
	$(BIN)/dvc commit --force --quiet
	$(BIN)/snakemake --touch --cores 1 --quiet
	@$(BIN)/aahr summary

# The ablation study (after make reproduce, whose seed-0 runs it reuses), in the order that matters
# most if it is stopped (each step keeps every finished run; the next `make study` continues):
#  1. the baseline, `base` and the 2 x 2 of the global branch and the GNN at three training seeds;
#  2. the doubled-schedule rows of Table 5 (does a verdict move when training is twice as long?) and
#     the other leave-one-out rows at three seeds;
#  3. the regime sweep: the whole pipeline with each global branch of configs/regime/*.yaml, aahr at
#     two seeds, against no_global of step 1 (results/regime_sweep.{csv,md}, figures/regime_sweep.png);
#  4. Table 5's other rows, Tables 1-5, module health, convergence, figures (results/study/).
# `make study-data-seeds` (after it, about 1.6 job-hours more): the whole pipeline with data seeds 1 and 2
# for aahr and gpo (results/study/variance.md); left out of make study to keep it within 16 job-hours.
# One Snakemake at a time: they share .snakemake/aahr-params.yaml.
DATA_SEEDS   := 1 2
STUDY_SEEDS  := 0 1 2
SWEEP_SEEDS  := 0 1
FIRST        := gpo base aahr no_gnn no_global no_global_no_gnn
REST         := no_proto no_moco
DOUBLED      := aahr_2x no_gnn_2x no_global_2x no_global_no_gnn_2x base_2x gpo_2x   # Table 5's doubled-schedule rows
SWEEP        := gb500k gb150k   # configs/regime/, the point nearest the paper's regime first
SNAKE_STUDY  := $(BIN)/snakemake --cores $(CORES)
STUDY_RUNS    = $(foreach v,$(1),$(foreach s,$(2),results/study/synth/$(v)/seed$(s)/metrics.json))
study: $(STAMP)
	$(SNAKE_STUDY) --configfile configs/study.yaml -- $(call STUDY_RUNS,$(FIRST),$(STUDY_SEEDS))
	$(SNAKE_STUDY) --configfile configs/study.yaml -- $(call STUDY_RUNS,$(DOUBLED),0) \
	  $(call STUDY_RUNS,$(REST),$(STUDY_SEEDS))
	for p in $(SWEEP); do $(SNAKE_STUDY) --configfile configs/regime/$$p.yaml -- \
	  results/regime/$$p/synth/zeroshot_dev/metrics.json \
	  $$(for s in $(SWEEP_SEEDS); do echo results/regime/$$p/synth/aahr/seed$$s/metrics.json; done) || exit 1; done
	$(BIN)/aahr tables --params params.yaml --regime-sweep $(foreach p,$(SWEEP),results/regime/$(p)) results/study \
	  --local-root results/study --out results
	$(SNAKE_STUDY) study --configfile configs/study.yaml

study-data-seeds: $(STAMP)
	for s in $(DATA_SEEDS); do $(SNAKE_STUDY) --configfile configs/study_data$$s.yaml -- \
	  $$(for v in aahr gpo; do echo results/study/data$$s/synth/$$v/seed0/metrics.json; done) || exit 1; done
	$(BIN)/aahr tables --params params.yaml --variance results/study $(foreach s,$(DATA_SEEDS),results/study/data$(s)) \
	  --out results/study

# The test suite. It installs and starts nothing: the SLURM tests run only where a SLURM cluster answers
# `sinfo`, and are otherwise skipped (the summary at the end says so, and why).
test: $(STAMP)
	$(BIN)/python -m pytest

# The SLURM tests on a single-node SLURM on localhost: tests/slurm/setup_cluster.sh installs Debian's
# slurm-wlm and munge when they are missing (root, apt-get), then the tests start the daemons and stop
# them when done. Where a cluster already answers `sinfo`, they run on that one instead.
test-slurm: $(STAMP)
	bash tests/slurm/setup_cluster.sh
	AAHR_TEST_SLURM=1 $(BIN)/python -m pytest tests/test_slurm.py

# DVC: outputs to / from the default remote (.dvc/config; `dvc remote modify --local` to move it).
# After a pull the files' times are in arbitrary order: --touch tells Snakemake they are current.
push: $(STAMP)
	$(BIN)/dvc push

pull: $(STAMP)
	$(BIN)/dvc pull
	$(BIN)/snakemake --touch --cores 1 --quiet

report: $(STAMP)
	$(BIN)/snakemake --report results/report.html

dag: $(STAMP)
	$(BIN)/snakemake --dag | dot -Tpng > results/dag.png

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow

clean-venv:
	rm -rf $(VENV)
