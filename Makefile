# Two commands a newcomer needs: `make train` and `make test`. Everything else is optional.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DATA_MIRROR ?= ../shared/datasets
MODEL ?= artifacts/latest
TRAIN_ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=
FRAMES ?= 100000
N ?= 50
FLEET_ARGS ?=
export PYTHON DATA_MIRROR MODEL

.PHONY: venv data train site-proof test test-all bench soak fleet-test deploy deploy-fleet uninstall pull pi-sim clean

venv: $(VENV)/.installed

# One venv holds the trainer and all three runtimes: numpy<2 (tflite-runtime 2.14 breaks
# under NumPy 2) and ml-dtypes<0.6 (what TF 2.21 runs with next to numpy<2).
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -e ".[train,edge,litert,dev]"
	touch $@

data: venv
	$(PYTHON) -m training data --dest data --mirror "$(DATA_MIRROR)"

train: data
	$(PYTHON) -m training train --data-root data --artifacts artifacts --video "$(DATA_MIRROR)/video/highway-320x240.avi" $(TRAIN_ARGS)

# The fine-tuning proof (README "Your camera"): the highway clip as a user's camera, its
# hand-corrected labels in training/sites/highway; the newest quarter of them held out, the
# 5 labelled frames (2.7 s) before those unused, so no car is on both sides. Scale 2: a quarter
# of the labelled cars are 9-14 px long at 320x240; the camera runs with [processing] scales = [2].
SITE_ARGS ?=
site-proof: data
	$(PYTHON) -m training site-frames --video "$(DATA_MIRROR)/video/highway-320x240.avi" --labels training/sites/highway --out data/sites/highway
	$(PYTHON) -m training finetune --base $(MODEL) --data data/sites/highway --name highway --ignore-classes truck,cut --holdout 0.25 --holdout-gap 5 --scale 2 --video "$(DATA_MIRROR)/video/highway-320x240.avi" $(SITE_ARGS)

test: data
	$(PYTHON) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: data
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(PYTHON) -m edge bench --model $(MODEL) --video "$(DATA_MIRROR)/video/highway-320x240.avi" --json artifacts/bench.json $(BENCH_ARGS)

soak: venv
	$(PYTHON) -m edge soak --model $(MODEL) --video "$(DATA_MIRROR)/video/highway-320x240.avi" --frames $(FRAMES) --json artifacts/soak.json

# N daemons (with 1 and 10 beside them) on one mosquitto, the broker killed twice per phase (README "Many cameras")
fleet-test: venv
	$(PYTHON) -m loadtest --model $(MODEL) --video "$(DATA_MIRROR)/video/highway-320x240.avi" --daemons $(N) --json artifacts/fleet-test.json $(FLEET_ARGS)

deploy: venv
	bash deploy/deploy.sh

# Every Pi of an Ansible inventory at once: make deploy-fleet INVENTORY=... [DRY_RUN=1] (docs/deploy.md)
deploy-fleet: venv
	bash deploy/fleet/deploy-fleet.sh

uninstall:
	bash deploy/uninstall.sh

# A Pi's labelled captures as a YOLO folder for fine-tuning: make pull PI=user@host [DEST=] [OUT=]
pull:
	bash deploy/pull.sh

pi-sim: venv
	bash pisim/run.sh

clean:
	rm -rf build dist *.egg-info .pytest_cache
