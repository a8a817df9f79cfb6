# The two commands of the README. Both build .venv from the pinned files first (once).
#   make reproduce   run the whole default pipeline on the embedded synth data
#   make test        run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
CORES  ?= 2
# Jobs get one thread each and CORES of them run at once: many small jobs do more work per second
# that way than one job on every core (an aahr step on 1 thread takes 1.4x its time on 2; README,
# Performance). JOB_THREADS=$(CORES) gives every job all cores.
JOB_THREADS ?= 1
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: reproduce study test setup dag lint report push pull clean-venv

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

setup: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --max-threads $(JOB_THREADS) --printshellcmds
	@$(BIN)/aahr summary

# The ablation study (after make reproduce, whose seed-0 runs it reuses): three training seeds of every
# variant, Table 5, module health (results/study/); then the whole pipeline with data seeds 1 and 2
# for aahr and gpo; then the two sources of variance side by side (results/study/variance.md).
# One Snakemake at a time: they share .snakemake/aahr-params.yaml.
DATA_SEEDS  := 1 2
SNAKE_STUDY := $(BIN)/snakemake --cores $(CORES) --max-threads $(JOB_THREADS)
study: $(STAMP)
	$(SNAKE_STUDY) study --configfile configs/study.yaml
	for s in $(DATA_SEEDS); do $(SNAKE_STUDY) --configfile configs/study_data$$s.yaml -- \
	  $$(for v in aahr gpo; do echo results/study/data$$s/synth/$$v/seed0/metrics.json; done) || exit 1; done
	$(BIN)/aahr tables --params params.yaml --variance results/study $(foreach s,$(DATA_SEEDS),results/study/data$(s)) \
	  --out results/study

test: $(STAMP)
	$(BIN)/python -m pytest

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
