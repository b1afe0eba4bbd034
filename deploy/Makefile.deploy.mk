# Deployment verbs; included by the top-level Makefile (`include deploy/Makefile.deploy.mk`).
#   make up             natively, in one command: fetch if missing, serve a first version from one short fit
#                       if none is current while the whole training job runs behind it (deploy/up.sh)
#   make retrain        one gated retraining cycle (train a candidate, gate, promote or refuse, prune)
#   make docker-lint    hadolint + `docker compose config -q`
#   make docker-build   both images: movie-retrieval-train (trainer, retrainer, workers) and movie-retrieval-serve
#                       (api: no training code, no `train` extra), the Dockerfile's `train` and `serve` targets
#   make docker-up      build and start the stack, return once it serves (docker-down stops it, volumes kept)
#   make docker-e2e     the Docker part of CI on a real engine (.ci/docker_e2e.sh)
# Settings (environment or make VAR=...): PYTHON, DATA_DIR, MODELS_DIR, HOST, PORT, and the TRAIN_*, RETRAIN_*
# and GATE_* variables that deploy/jobs.sh reads.

PYTHON ?= .venv/bin/python
DATA_DIR ?= data
MODELS_DIR ?= models
HOST ?= 127.0.0.1
PORT ?= 8000
# The server's default store; training and retraining read the ratings it holds.
RECSYS_RATINGS_URL ?= sqlite:///$(DATA_DIR)/ratings.db
JOBS = PYTHON=$(PYTHON) DATA_DIR=$(DATA_DIR) MODELS_DIR=$(MODELS_DIR) RECSYS_RATINGS_URL=$(RECSYS_RATINGS_URL) sh deploy/jobs.sh

.PHONY: up retrain docker-lint docker-build docker-up docker-down docker-e2e

up:
	PYTHON=$(PYTHON) DATA_DIR=$(DATA_DIR) MODELS_DIR=$(MODELS_DIR) HOST=$(HOST) PORT=$(PORT) \
		RECSYS_RATINGS_URL=$(RECSYS_RATINGS_URL) sh deploy/up.sh

retrain:
	$(JOBS) retrain

docker-lint:
	hadolint Dockerfile
	docker compose config -q

docker-build:
	docker compose build

docker-up:
	docker compose up -d --wait

docker-down:
	docker compose down

docker-e2e:
	bash .ci/docker_e2e.sh
